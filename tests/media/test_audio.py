"""Decoding: every container we promise, down-mix and resampling, and each bad input."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from avsent.errors import MediaError
from avsent.media.audio import load_audio, stream_audio

RATE = 16000


def tone(seconds: float = 2.0, rate: int = RATE, freq: float = 440.0, amp: float = 0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_av(
    path: Path,
    codec: str | None,
    samples: np.ndarray,
    *,
    video: str | None = "mpeg4",
    rate: int = RATE,
) -> Path:
    """A real container: optional ``video`` track plus a stereo ``codec`` audio track."""
    with av.open(str(path), "w") as out:
        vstream = None
        if video:
            vstream = out.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        if codec is not None:
            astream = out.add_stream(codec, rate=rate)
            astream.layout = "stereo"
            step = 1024
            for start in range(0, len(samples), step):
                chunk = np.ascontiguousarray(np.stack([samples[start : start + step]] * 2))
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
        if vstream is not None:
            for i in range(int(len(samples) / rate * 10)):
                image = np.full((48, 64, 3), i * 8 % 255, np.uint8)
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(vstream.encode(None))
    return path


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


# -- good files ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_soundfile_formats_decode_resampled(tmp_path, suffix):
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, tone(), RATE)
    samples = load_audio(path, 22050)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(2.0 * 22050, abs=30)
    assert dominant_frequency(samples, 22050) == pytest.approx(440, abs=2)
    assert np.abs(samples).max() == pytest.approx(0.3, rel=0.05)


@pytest.mark.parametrize(
    ("suffix", "codec", "video", "rate"),
    [
        ("mp4", "aac", "mpeg4", RATE),
        ("mov", "aac", "mpeg4", RATE),
        ("mkv", "aac", "mpeg4", RATE),
        ("avi", "mp3", "mpeg4", RATE),
        ("flv", "mp3", "flv", 22050),  # FLV takes MP3 only at 11/22/44 kHz
        ("m4a", "aac", None, RATE),
        ("mp3", "mp3", None, RATE),
    ],
)
def test_containers_decode_the_audio_track(tmp_path, suffix, codec, video, rate):
    path = write_av(tmp_path / f"clip.{suffix}", codec, tone(rate=rate), video=video, rate=rate)
    samples = load_audio(path, 22050)
    # Lossy codecs add priming samples and a last partial frame: ± a few frames.
    assert len(samples) == pytest.approx(2.0 * 22050, abs=0.1 * 22050)
    assert dominant_frequency(samples, 22050) == pytest.approx(440, abs=2)
    # Stereo with identical channels is averaged, so the level is kept.
    assert np.abs(samples).max() == pytest.approx(0.3, rel=0.15)


def test_downmix_is_the_channel_mean(tmp_path):
    left = tone(amp=0.4)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), RATE)
    samples = load_audio(path, RATE)
    np.testing.assert_allclose(samples, left / 2, atol=1e-4)


@pytest.mark.parametrize("channels", [3, 8, 12])
def test_many_channels_are_averaged(tmp_path, channels):
    # 8 and more planar channels crash PyAV's to_ndarray: the decoder reads packed samples.
    wave = tone()
    data = np.tile(wave[:, None], (1, channels))
    data[:, 0] = 0.0
    path = tmp_path / "surround.wav"
    sf.write(path, data, RATE)
    samples = load_audio(path, RATE)
    np.testing.assert_allclose(samples, wave * (channels - 1) / channels, atol=1e-4)


def test_max_seconds_stops_early(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, tone(seconds=5.0), RATE)
    assert len(load_audio(path, 8000, max_seconds=1.5)) == 12000


def test_real_files_decode(shared_data):
    files = [
        *sorted((shared_data / "speech/emodb").glob("*.wav"))[:2],
        *sorted((shared_data / "speech/crema-d").glob("*.mp3"))[:2],
        *sorted((shared_data / "av/crema-d").glob("*.flv"))[:2],
        shared_data / "av/mead/M030_sad_3_001.mp4",
    ]
    for path in files:
        samples = load_audio(path, 22050)
        with av.open(str(path)) as container:
            seconds = container.duration / 1e6
        assert samples.dtype == np.float32 and samples.ndim == 1, path
        assert len(samples) / 22050 == pytest.approx(seconds, abs=0.1), path
        assert 0.01 < np.abs(samples).max() <= 1.05, path


def test_emodb_wav_at_its_own_rate_is_unchanged(shared_data):
    path = sorted((shared_data / "speech/emodb").glob("*.wav"))[0]
    expected, rate = sf.read(path, dtype="float32")
    np.testing.assert_allclose(load_audio(path, rate), expected, atol=1e-6)


# -- streaming: the same samples, a few frames' worth at a time --------------------------


@pytest.mark.parametrize(
    ("suffix", "codec"), [("wav", None), ("flac", None), ("mp4", "aac"), ("mp3", "mp3")]
)
def test_stream_blocks_join_to_load_audio(tmp_path, suffix, codec):
    samples = tone(seconds=30.0, rate=44100 if codec is None else RATE)
    path = tmp_path / f"long.{suffix}"
    if codec is None:
        sf.write(path, samples, 44100)
    else:
        write_av(path, codec, samples, video="mpeg4" if suffix == "mp4" else None)
    blocks = list(stream_audio(path, 22050))
    assert len(blocks) > 100 and max(b.size for b in blocks) <= 8192  # never the whole file
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path, 22050))


def test_stream_stops_at_max_seconds(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, tone(seconds=5.0), RATE)
    assert sum(b.size for b in stream_audio(path, 8000, max_seconds=1.5)) == 12000


@pytest.mark.parametrize(
    ("amp", "cut", "words"), [(0.3, True, "truncated"), (0.0, False, "silent")]
)
def test_whole_file_checks_fail_after_the_last_block(tmp_path, amp, cut, words):
    path = tmp_path / "a.wav"
    sf.write(path, tone(seconds=4.0, amp=amp), RATE)
    blocks = stream_audio(truncate(path) if cut else path, RATE)
    seen = 0
    with pytest.raises(MediaError, match=words):
        for block in blocks:
            seen += block.size
    assert seen >= RATE  # the samples came first; the verdict with the end


# -- bad input: one clear MediaError each, naming the file -----------------------------


def expect_media_error(path: Path, words: str, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as info:
        load_audio(path, 22050, **kwargs)
    message = str(info.value)
    assert str(path) in message and words in message, message
    # No FFmpeg traceback chained underneath the message.
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


def test_missing_file(tmp_path):
    expect_media_error(tmp_path / "nope.wav", "file not found")


def test_folder(tmp_path):
    expect_media_error(tmp_path, "not a file")


def test_real_video_without_audio(shared_data):
    expect_media_error(shared_data / "face-video/woman2_noaudio.mp4", "no audio stream")


def test_written_video_without_audio(tmp_path):
    path = write_av(tmp_path / "mute.mp4", None, tone())
    expect_media_error(path, "no audio stream (it contains: video)")


@pytest.mark.parametrize("suffix", ["wav", "mp4", "mp3"])
def test_random_bytes(tmp_path, suffix):
    path = tmp_path / f"noise.{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(20000))
    expect_media_error(path, "cannot be read")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.wav"
    path.touch()
    expect_media_error(path, "cannot be read")


def test_truncated_wav(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(), RATE)
    expect_media_error(truncate(path), "truncated: only 1.00 s could be decoded of the 2.00 s")


def test_truncated_mp3(tmp_path):
    path = write_av(tmp_path / "a.mp3", "mp3", tone(), video=None)
    expect_media_error(truncate(path), "truncated")


@pytest.mark.parametrize("suffix", ["flac", "mp4"])
def test_truncated_files_that_ffmpeg_rejects(tmp_path, suffix):
    path = tmp_path / f"a.{suffix}"
    if suffix == "flac":
        sf.write(path, tone(), RATE)
    else:
        write_av(path, "aac", tone())
    expect_media_error(truncate(path), "corrupt" if suffix == "flac" else "cannot be read")


def test_truncation_fallback_keeps_what_decodes(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(), RATE)
    samples = load_audio(truncate(path), RATE, allow_truncated=True)
    assert len(samples) == pytest.approx(RATE, abs=50)


def test_real_truncated_mp4(shared_data):
    # The index declares 6.28 s of AAC but the file holds 4.4 s of it (and it is silent).
    path = shared_data / "av/mead/M030_crop_sad.mp4"
    expect_media_error(path, "truncated: only 4.42 s could be decoded of the 6.28 s")
    samples = load_audio(path, 22050, allow_truncated=True, allow_silent=True)
    assert len(samples) / 22050 == pytest.approx(4.42, abs=0.01)


def test_empty_clip(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), RATE)
    expect_media_error(path, "no samples (empty clip)")


@pytest.mark.parametrize("amp", [0.0, 1e-5])
def test_silent_clip(tmp_path, amp):
    path = tmp_path / "quiet.wav"
    sf.write(path, tone(amp=amp), RATE, subtype="FLOAT")
    expect_media_error(path, "silent")
    samples = load_audio(path, RATE, allow_silent=True)
    assert len(samples) == 2 * RATE and np.abs(samples).max() <= 1e-5 + 1e-7


def test_silence_threshold_is_configurable(tmp_path):
    path = tmp_path / "soft.wav"
    sf.write(path, tone(amp=0.005), RATE)
    assert len(load_audio(path, RATE)) == 2 * RATE
    expect_media_error(path, "silent (peak -46 dBFS, threshold -40 dBFS)", silence_threshold=0.01)


def test_real_silent_tracks(shared_data):
    # Two MEAD face crops carry an AAC track of pure digital silence.
    for name in ("M030_crop_disgusted.mp4", "M030_crop_surprised.mp4"):
        expect_media_error(shared_data / "av/mead" / name, "silent (peak -inf dBFS")


@pytest.mark.parametrize("kwargs", [{"sample_rate": 0}, {"sample_rate": 16000, "max_seconds": 0}])
def test_bad_arguments_are_programming_errors(tmp_path, kwargs):
    with pytest.raises(ValueError):
        load_audio(tmp_path / "x.wav", **kwargs)
