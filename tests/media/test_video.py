"""Frame sampling: containers and codecs, timestamps, rotation, seeking, and every bad input."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avsent.errors import MediaError
from avsent.media.video import VideoFrames, read_frames

W, H = 64, 48


def frame_image(index: int) -> np.ndarray:
    """A flat frame whose grey level encodes its index (survives lossy coding to ±1 step)."""
    return np.full((H, W, 3), min(255, 8 * index), dtype=np.uint8)


def index_of(frame: np.ndarray) -> int:
    return round(float(frame[8:-8, 8:-8].mean()) / 8)


def write_video(
    path: Path,
    codec: str = "libx264",
    *,
    n: int = 24,
    fps: int = 10,
    times: list[float] | None = None,
    rotation: float | None = None,
    image=frame_image,
    options: dict | None = None,
    keyframes: Iterable[int] = (),
) -> Path:
    """A small real video; ``times`` (seconds) gives a variable frame rate; ``keyframes``
    (frame numbers) forces key frames there (pass ``g`` so no others come)."""
    keyframes = set(keyframes)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if times is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n if times is None else len(times)):
            frame = av.VideoFrame.from_ndarray(image(i), format="rgb24")
            if i in keyframes:
                frame.pict_type = av.video.frame.PictureType.I
            if times is not None:
                frame.pts = round(times[i] * 1000)
                frame.time_base = stream.codec_context.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


FORMATS = [
    ("mp4", "libx264"),
    ("mp4", "mpeg4"),
    ("mov", "libx264"),
    ("mkv", "libx264"),
    ("avi", "mpeg4"),
    ("flv", "flv"),
    ("webm", "libvpx"),
    ("webm", "libvpx-vp9"),
]


@pytest.mark.parametrize(("ext", "codec"), FORMATS)
def test_uniform_sampling_in_each_container(tmp_path, ext, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = write_video(tmp_path / f"clip.{ext}", codec, n=24, fps=10)
    clip = read_frames(path, num_frames=6)
    assert isinstance(clip, VideoFrames)
    assert clip.frames.shape == (6, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.duration == pytest.approx(2.4, abs=0.11)
    # targets are slice centres 0.2, 0.6, ... s → frames 2, 6, 10, 14, 18, 22
    assert [index_of(f) for f in clip.frames] == pytest.approx([2, 6, 10, 14, 18, 22], abs=1)
    assert np.all(np.diff(clip.times) > 0)
    assert clip.fps == pytest.approx(10, rel=0.01)
    assert not clip.truncated


def test_fixed_fps_stops_at_num_frames_or_clip_end(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n=30, fps=10)  # 3 s
    clip = read_frames(path, num_frames=100, fps=2)
    assert len(clip) == 6
    assert clip.times == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=1e-6)
    assert [index_of(f) for f in clip.frames] == pytest.approx([0, 5, 10, 15, 20, 25], abs=1)
    assert len(read_frames(path, num_frames=4, fps=2)) == 4


def test_variable_frame_rate_keeps_the_frame_on_screen(tmp_path):
    times = [0.0, 0.1, 0.15, 0.9, 1.0, 1.6, 1.7, 1.75, 1.8, 2.4]
    path = write_video(tmp_path / "vfr.mkv", times=times)
    clip = read_frames(path, num_frames=5)
    stated = clip.duration
    for target, frame, t in zip(
        (np.arange(5) + 0.5) * stated / 5, clip.frames, clip.times, strict=True
    ):
        on_screen = max(i for i, s in enumerate(times) if s <= target + 1e-6)
        assert index_of(frame) == pytest.approx(on_screen, abs=1)
        assert t == pytest.approx(times[on_screen], abs=1e-3)


def reference_frames(path: Path, times: np.ndarray) -> list[int]:
    """The naive way: decode every frame, keep the last one at or before each target."""
    with av.open(str(path)) as container:
        decoded = [
            (f.time, index_of(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)
        ]
    return [max((t, i) for t, i in decoded if t <= target + 1e-6)[1] for target in times]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_seeking_picks_the_same_frames_as_decoding_everything(tmp_path, ext):
    image = lambda i: frame_image(i % 32)  # noqa: E731 - levels stay in range
    path = write_video(
        tmp_path / f"long.{ext}", n=400, fps=25, image=image, options={"g": "12", "bf": "2"}
    )
    clip = read_frames(path, num_frames=7, seek_gap=0.5)
    want = reference_frames(path, clip.times)
    assert [index_of(f) for f in clip.frames] == pytest.approx(want, abs=1)


def full_decode(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


B_FRAMES = {"g": "12", "bf": "3"}  # key frames 12 apart, B-frames that nothing refers to


@pytest.mark.parametrize(
    ("ext", "codec", "options", "times"),
    [
        ("mp4", "libx264", B_FRAMES, None),  # seeks by the key frame index
        ("mkv", "libx264", B_FRAMES, None),  # seeks over gaps
        ("mp4", "mpeg4", {"g": "12", "bf": "2"}, None),
        ("mkv", "libx264", B_FRAMES, [0.04 * i + (0.5 if i > 60 else 0) for i in range(120)]),
    ],
)
@pytest.mark.parametrize(("num_frames", "fps"), [(7, None), (40, None), (30, 12.0)])
def test_kept_frames_are_exactly_what_a_full_decode_shows(
    tmp_path, ext, codec, options, times, num_frames, fps
):
    """Skipping frames between targets must never change a kept frame, by a single pixel."""
    image = lambda i: frame_image(i % 32)  # noqa: E731 - levels stay in range
    path = write_video(
        tmp_path / f"b.{ext}", codec, n=120, fps=25, times=times, image=image, options=options
    )
    clip = read_frames(path, num_frames=num_frames, fps=fps, seek_gap=0.5)
    decoded = full_decode(path)
    start = min(t for t, _ in decoded)
    steps = np.arange(len(clip))
    targets = start + (steps / fps if fps else (steps + 0.5) * clip.duration / num_frames)
    for target, t, frame in zip(targets, clip.times, clip.frames, strict=True):
        time, want = max((d for d in decoded if d[0] <= target + 1e-6), key=lambda d: d[0])
        assert t == pytest.approx(time, abs=1e-9)
        np.testing.assert_array_equal(frame, want)


def test_frames_no_target_needs_are_not_decoded(tmp_path, monkeypatch):
    import avsent.media.video as video

    options = {"g": "1000", "bf": "3", "x264-params": "b-pyramid=none"}  # no B is a reference
    path = write_video(tmp_path / "b.mp4", n=120, fps=25, options=options)
    decoded = 0
    real_decode = video._decode

    def counting(*args, **kwargs):
        nonlocal decoded
        for frame in real_decode(*args, **kwargs):
            decoded += 1
            yield frame

    monkeypatch.setattr(video, "_decode", counting)
    read_frames(path, num_frames=8)
    # one key frame, so every frame up to the last target is walked; the B-frames between
    # targets (3 of every 4 frames) are skipped
    assert decoded < 0.35 * len(full_decode(path))


def test_each_packet_knows_the_frame_shown_after_it():
    """Decode order I P B B B P B B B (display 0 4 1 2 3 8 5 6 7): a B's successor may be a
    packet decoded before it, and the last frame has none."""
    from types import SimpleNamespace

    from avsent.media.video import _timed_packets

    order = [0, 4, 1, 2, 3, 8, 5, 6, 7, None]  # None: the flush packet at the end
    timed = list(_timed_packets([SimpleNamespace(pts=p) for p in order], 0.5))
    assert [(t, after) for _, t, after in timed] == [
        (0.0, 0.5), (2.0, 2.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0),
        (4.0, math.inf), (2.5, 3.0), (3.0, 3.5), (3.5, 4.0), (None, math.inf),
    ]  # fmt: skip


@pytest.mark.parametrize(("degrees", "corner"), [(90, "bottom-left"), (-90, "top-right")])
def test_rotation_metadata_is_applied(tmp_path, degrees, corner):
    def marked(i):
        image = np.zeros((H, W, 3), np.uint8)
        image[: H // 2, : W // 2] = 255  # top-left quadrant white
        return image

    path = write_video(tmp_path / "phone.mp4", n=5, rotation=degrees, image=marked)
    clip = read_frames(path, num_frames=2)
    assert clip.frames.shape[1:3] == (W, H)  # portrait now
    frame = clip.frames[0].mean(-1)
    quadrants = {
        "top-left": frame[: W // 2, : H // 2],
        "top-right": frame[: W // 2, H // 2 :],
        "bottom-left": frame[W // 2 :, : H // 2],
        "bottom-right": frame[W // 2 :, H // 2 :],
    }
    assert max(quadrants, key=lambda k: quadrants[k].mean()) == corner


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MediaError, match=r"nope\.mp4: file not found"):
        read_frames(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="not a file"):
        read_frames(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(MediaError, match=r"speech\.m4a: no video stream \(streams found: audio\)"):
        read_frames(path)


def test_garbage_file_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=r"clip\.mp4: cannot be opened as a media file"):
        read_frames(path)


def test_mp4_cut_short_cannot_be_opened(tmp_path):
    path = write_video(tmp_path / "cut.mp4", n=40)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # index (moov) lost
    with pytest.raises(MediaError, match=r"cut\.mp4: .*truncated"):
        read_frames(path)


def noise(i: int) -> np.ndarray:
    """Frames that do not compress away, so cutting the file's bytes cuts its frames."""
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_truncated_stream_is_reported(tmp_path):
    path = write_video(tmp_path / "cut.mkv", n=100, fps=10, image=noise)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.3)])
    with pytest.raises(MediaError, match=r"cut\.mkv: video frames stop at .* truncated"):
        read_frames(path, num_frames=8)


def test_slightly_truncated_stream_is_sampled_over_what_decodes(tmp_path):
    path = write_video(tmp_path / "cut.mkv", n=100, fps=10, image=noise)
    # 70 %: frames end near 7 s, well past the 1 s end tolerance and above half coverage,
    # whichever encoder build wrote the bytes (at 85 % one build lands inside the tolerance)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.7)])
    clip = read_frames(path, num_frames=8)
    assert clip.truncated
    assert len(clip) == 8 and 5.0 < clip.duration < 8.5
    assert clip.times[-1] <= clip.duration + 0.1
    assert len(set(clip.times.tolist())) == 8  # spread over the real frames, no repeats


def test_video_stream_without_frames(tmp_path):
    path = tmp_path / "empty.mkv"  # a video track with no frames, next to some sound
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 8000), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*audio.encode(frame), *audio.encode(), *video.encode()]:
            container.mux(packet)
    with pytest.raises(MediaError, match=r"empty\.mkv: no decodable video frames"):
        read_frames(path)


@pytest.mark.parametrize(("name", "codec"), [("face.png", "png"), ("face.jpg", "mjpeg")])
def test_a_still_image_is_not_a_one_frame_video(tmp_path, name, codec):
    path = tmp_path / name
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = W, H
        stream.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
        frame = av.VideoFrame.from_ndarray(frame_image(3), format="rgb24")
        for packet in [*stream.encode(frame.reformat(format=stream.pix_fmt)), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(
        MediaError, match=rf"{name}: a single frame \(a still image\?\), not a video"
    ):
        read_frames(path, num_frames=4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        read_frames("x.mp4", num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        read_frames("x.mp4", fps=-1)


def test_real_clips_decode(shared_data):
    clips = [
        *sorted((shared_data / "av").glob("*/*")),
        shared_data / "face-video/woman2_noaudio.mp4",
    ]
    for path in clips:
        clip = read_frames(path, num_frames=4)
        assert clip.frames.shape[0] == 4 and clip.frames.shape[-1] == 3, path
        assert np.all(np.diff(clip.times) > 0), path
        assert math.isfinite(clip.duration) and clip.duration > 1.0, path


def test_real_h264_clips_keep_exactly_what_a_full_decode_shows(shared_data):
    """MEAD clips: B-frames skipped, and seeks between key frames 2 s apart (crop_surprised)."""
    for name in [
        "av/mead/M030_crop_surprised.mp4",
        "face-video/mead/W009_front_sad_level3_001.mp4",
    ]:
        path = shared_data / name
        clip = read_frames(path, num_frames=16)
        decoded = full_decode(path)
        targets = min(t for t, _ in decoded) + (np.arange(16) + 0.5) * clip.duration / 16
        for target, t, frame in zip(targets, clip.times, clip.frames, strict=True):
            time, want = max((d for d in decoded if d[0] <= target + 1e-6), key=lambda d: d[0])
            assert t == pytest.approx(time, abs=1e-9), name
            np.testing.assert_array_equal(frame, want, err_msg=name)


@pytest.mark.parametrize(("tag", "corner"), [("90", "top-right"), ("270", "bottom-left")])
def test_old_style_rotate_tag_turns_clockwise(tmp_path, monkeypatch, tag, corner):
    """Phones' ``rotate`` tag is clockwise (a display matrix turns the other way).

    FFmpeg now reads the tag into a display matrix for MP4, so the stream metadata is
    stood in for; what the tag means and how the frame turns are the real code."""
    from types import SimpleNamespace

    from avsent.media import video

    def marked(i):
        image = np.zeros((H, W, 3), np.uint8)
        image[: H // 2, : W // 2] = 255  # top-left quadrant white
        return image

    real_tag = video._rotate_tag
    assert real_tag(SimpleNamespace(metadata={"rotate": "bogus"})) == 0
    monkeypatch.setattr(
        video, "_rotate_tag", lambda stream: real_tag(SimpleNamespace(metadata={"rotate": tag}))
    )
    path = write_video(tmp_path / "old-phone.mp4", n=5, image=marked)
    frame = read_frames(path, num_frames=2).frames[0].mean(-1)
    assert frame.shape == (W, H)  # portrait now
    quadrants = {
        "top-left": frame[: W // 2, : H // 2],
        "top-right": frame[: W // 2, H // 2 :],
        "bottom-left": frame[W // 2 :, : H // 2],
        "bottom-right": frame[W // 2 :, H // 2 :],
    }
    assert max(quadrants, key=lambda k: quadrants[k].mean()) == corner


# -- durations learned from the frames, late starts, the argument edges, exact errors ------


def write_elementary(path: Path, n: int, fps: int = 10) -> Path:
    """An MPEG-4 elementary stream (.m4v): frames carry times, the headers state no length."""
    with av.open(str(path), "w", format="m4v") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_a_stream_without_a_stated_length_is_timed_from_its_frames(tmp_path):
    path = write_elementary(tmp_path / "clip.m4v", n=20, fps=10)
    with av.open(str(path)) as container:  # the premise: no length stated anywhere
        stream = container.streams.video[0]
        assert not stream.duration and not container.duration
        step = float(1 / stream.average_rate)
    clip = read_frames(path, num_frames=4)
    assert clip.duration == pytest.approx(1.9 + step, abs=1e-6)  # last frame + one step
    assert [index_of(f) for f in clip.frames] == pytest.approx([2, 7, 12, 17], abs=1)
    assert not clip.truncated


def test_a_late_start_shifts_every_target(tmp_path):
    times = [2.0 + 0.1 * i for i in range(20)]  # 2.0 … 3.9 s
    path = write_video(tmp_path / "late.mkv", times=times)
    clip = read_frames(path, num_frames=2)
    assert clip.times[0] >= 2.0
    assert [index_of(f) for f in clip.frames] == pytest.approx([5, 15], abs=1)


def test_the_smallest_arguments_are_accepted(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n=10, fps=10)  # 1 s
    assert len(read_frames(path, num_frames=1)) == 1
    clip = read_frames(path, num_frames=5, fps=0.5)  # one frame every 2 s of a 1-s clip
    assert len(clip) == 1 and clip.times[0] == pytest.approx(0.0)
    with pytest.raises(ValueError) as info:
        read_frames(path, fps=0)
    assert str(info.value) == "fps must be positive, got 0"
    with pytest.raises(ValueError) as info:
        read_frames(path, num_frames=0)
    assert str(info.value) == "num_frames must be at least 1, got 0"


def test_missing_and_folder_paths_name_the_problem_exactly(tmp_path):
    for path, problem in ((tmp_path / "nope.mp4", "file not found"), (tmp_path, "not a file")):
        with pytest.raises(MediaError) as info:
            read_frames(path)
        assert (info.value.path, info.value.problem) == (path, problem)


def test_a_stream_start_stated_in_the_headers_is_where_sampling_begins(tmp_path):
    path = write_video(tmp_path / "late.ts", n=20)  # MPEG-TS streams start after 0 (0.2 s)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        start = float(video.start_time * video.time_base)
    assert start > 0.1  # the premise
    clip = read_frames(path, num_frames=2)
    assert clip.duration == pytest.approx(2.0, abs=1e-6)
    assert clip.times[0] >= start
    assert [index_of(f) for f in clip.frames] == pytest.approx([5, 15], abs=1)


# -- exact messages for every bad file, frames with odd timestamps, clips near their ends ---


def raised(path: Path, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as info:
        read_frames(path, **kwargs)
    return info.value


def test_no_video_stream_lists_every_kind_found(tmp_path):
    path = tmp_path / "radio.ts"  # MPEG-TS broadcasts carry data streams beside the sound
    with av.open(str(path), "w", format="mpegts") as container:
        audio = container.add_stream("mp2", rate=48000, layout="mono")
        container.add_data_stream()
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 4800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        container.mux([*audio.encode(frame), *audio.encode()])
    assert str(raised(path)) == f"{path}: no video stream (streams found: audio, data)"


def test_a_file_with_no_streams_at_all_says_none(tmp_path):
    path = tmp_path / "tags.txt"  # FFmpeg's metadata format: a valid file with no stream
    path.write_text(";FFMETADATA1\ntitle=clip\n")
    assert str(raised(path)) == f"{path}: no video stream (streams found: none)"


def test_a_video_codec_this_ffmpeg_cannot_decode_is_named(tmp_path):
    path = write_video(tmp_path / "clip.mkv", n=5)
    data = path.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1  # the track's codec id, replaced by an unknown one
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"))
    assert str(raised(path)) == (
        f"{path}: the video stream's codec is not supported by this FFmpeg build"
    )


def test_a_frame_cut_in_half_is_corrupt_data_even_without_seeking(tmp_path):
    """An AVI of raw frames cut mid-frame: the seeking pass fails, then the straight pass."""
    path = write_video(tmp_path / "cut.avi", "rawvideo", n=20)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    error = raised(path, num_frames=4)
    assert error.path == path
    assert error.problem.startswith("corrupt video data (") and error.problem.endswith(")")


class Unseekable(io.RawIOBase):
    """A byte sink that cannot seek back, like the pipe a live recorder writes to."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.data += data
        return len(data)


def write_with_sound(path: Path, n: int, sound_seconds: float, *, live: bool = False) -> Path:
    """MKV with ``n`` video frames (10 fps) and a silent track of ``sound_seconds``; ``live``
    writes it as to a pipe, so the file states no duration."""
    sink = Unseekable() if live else str(path)
    with av.open(sink, "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        for i in range(n):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")))
        container.mux(video.encode())
        samples = np.zeros((1, round(8000 * sound_seconds)), np.int16)
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        sound.sample_rate = 8000
        container.mux([*audio.encode(sound), *audio.encode()])
    if live:
        path.write_bytes(sink.data)
    return path


def test_a_live_recording_is_timed_by_its_video_frames_not_its_sound(tmp_path):
    path = write_with_sound(tmp_path / "live.mkv", n=20, sound_seconds=3.0, live=True)
    with av.open(str(path)) as container:  # the premise: no length stated anywhere
        assert not container.duration and not container.streams.video[0].duration
    clip = read_frames(path, num_frames=4)
    assert clip.duration == pytest.approx(2.0, abs=1e-6)  # last frame 1.9 s + one step
    assert [index_of(f) for f in clip.frames] == pytest.approx([2, 7, 12, 17], abs=1)


def test_a_live_recording_with_an_empty_video_track(tmp_path):
    path = write_with_sound(tmp_path / "live.mkv", n=0, sound_seconds=1.0, live=True)
    assert str(raised(path)) == f"{path}: no decodable video frames"


def test_a_raw_h264_stream_without_timestamps_is_an_error_not_a_crash(tmp_path):
    path = write_video(tmp_path / "clip.h264", n=10)  # a raw stream: no container at all
    assert raised(path).path == path


@pytest.mark.parametrize(
    ("pts", "dts", "time_base", "seconds"),
    [
        (3, 5, Fraction(1, 10), 0.3),
        (None, 5, Fraction(1, 10), 0.5),  # only a decode time: it stands in
        (None, None, Fraction(1, 10), None),
        (3, 3, None, None),
    ],
)
def test_a_frame_is_timed_by_its_presentation_or_else_its_decode_time(pts, dts, time_base, seconds):
    """No container written here gives a frame a decode time but no presentation time."""
    from types import SimpleNamespace

    from avsent.media.video import _frame_time

    assert _frame_time(SimpleNamespace(pts=pts, dts=dts, time_base=time_base)) == seconds


def test_sixteen_frames_by_default(tmp_path):
    clip = read_frames(write_video(tmp_path / "clip.mp4", n=32, fps=10))
    assert [index_of(f) for f in clip.frames] == pytest.approx(list(range(1, 32, 2)), abs=1)


def test_a_two_frame_clip_states_no_start(tmp_path):
    path = write_video(tmp_path / "two.mkv", n=2, fps=10)
    with av.open(str(path)) as container:  # the premise: a length but no start time
        stream = container.streams.video[0]
        assert stream.start_time is None and container.start_time is None and stream.duration
    clip = read_frames(path, num_frames=4)
    assert clip.duration == pytest.approx(0.2)
    assert clip.times == pytest.approx([0.0, 0.0, 0.1, 0.1])
    assert [index_of(f) for f in clip.frames] == [0, 0, 1, 1]


def test_more_targets_than_frames_repeat_the_frame_on_screen(tmp_path):
    clip = read_frames(write_video(tmp_path / "clip.mp4", n=10, fps=10), num_frames=20)
    assert not clip.truncated and clip.duration == pytest.approx(1.0)
    assert clip.times == pytest.approx(np.repeat(np.arange(10) / 10, 2))
    assert [index_of(f) for f in clip.frames] == pytest.approx(np.repeat(np.arange(10), 2), abs=1)


def test_a_video_shorter_than_its_sound(tmp_path):
    """The file's length is the sound's 0.8 s; the video's 5 frames end at 0.5 s. Within
    ``end_tolerance`` the last frame stands in; a tight one samples the video's own span."""
    path = write_with_sound(tmp_path / "clip.mkv", n=5, sound_seconds=0.8)
    loose = read_frames(path, num_frames=4)
    assert not loose.truncated and loose.duration == pytest.approx(0.8)
    assert [index_of(f) for f in loose.frames] == [1, 3, 4, 4]
    tight = read_frames(path, num_frames=4, end_tolerance=0.0)
    assert tight.truncated and tight.duration == pytest.approx(0.5)  # last frame + one step
    assert [index_of(f) for f in tight.frames] == [0, 1, 3, 4]
    error = raised(path, num_frames=4, end_tolerance=0.0, min_coverage=0.7)
    assert str(error) == (
        f"{path}: video frames stop at 0.50 s but the file says the video runs to 0.80 s: "
        "the file is truncated or damaged"
    )


def test_frames_ending_earlier_on_every_pass_stop_after_four_passes(tmp_path, monkeypatch):
    """A decoder whose frames end earlier each time it is asked must not loop forever."""
    from avsent.media import video

    passes = []

    def ends_early(sampler):
        passes.append(sampler.targets[-1])
        raise video._EndsEarly(sampler.targets[-1] - 0.1)

    monkeypatch.setattr(video._Sampler, "run", ends_early)
    path = write_video(tmp_path / "clip.mp4", n=20, fps=10)
    error = raised(path, num_frames=4, min_coverage=0.0)
    assert str(error) == (
        f"{path}: video frames end earlier than the file states, even on a second pass"
    )
    assert len(passes) == 4


# -- how much is decoded: seeks land on the key frame before a target, never behind --------


@pytest.fixture
def decoded_times(monkeypatch) -> list[float]:
    """The time of every frame the reader decodes, over all its passes."""
    from avsent.media import video

    times: list[float] = []
    real_decode = video._decode

    def recording(*args, **kwargs):
        for frame in real_decode(*args, **kwargs):
            times.append(frame.time)
            yield frame

    monkeypatch.setattr(video, "_decode", recording)
    return times


ONLY_FORCED_KEYS = {"g": "100000", "bf": "0", "x264-params": "scenecut=0"}


def test_a_target_just_after_a_key_frame_is_decoded_from_that_key_frame(tmp_path, decoded_times):
    """Key frames at 0 and 4 s; the one target at 4.1 s (MP4: seeks by the key frame index,
    whatever ``seek_gap`` says)."""
    image = lambda i: frame_image(i % 32)  # noqa: E731 - levels stay in range
    path = write_video(
        tmp_path / "clip.mp4",
        n=205,
        fps=25,
        image=image,
        options=ONLY_FORCED_KEYS,
        keyframes=(0, 100),
    )
    clip = read_frames(path, num_frames=1, seek_gap=100.0)
    assert clip.times == pytest.approx([4.08])
    assert [index_of(f) for f in clip.frames] == pytest.approx([102 % 32], abs=1)
    assert min(decoded_times) == pytest.approx(4.0) and len(decoded_times) <= 5


def test_an_mkv_without_a_key_frame_index_seeks_over_long_gaps(tmp_path, decoded_times):
    path = write_video(tmp_path / "long.mkv", n=400, fps=25, options={"g": "12", "bf": "0"})
    with av.open(str(path)) as container:  # the premise: one cue, no usable index
        assert len(container.streams.video[0].index_entries) == 1
    read_frames(path, num_frames=3)
    assert len(decoded_times) < 40  # of the 334 frames up to the last target


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
@pytest.mark.parametrize("num_frames", [3, 10, 25, 48])
def test_seeks_never_go_back_over_decoded_frames(tmp_path, decoded_times, ext, num_frames):
    """Key frames every 0.48 s; targets closer, farther and in step with them."""
    image = lambda i: frame_image(i % 32)  # noqa: E731 - levels stay in range
    path = write_video(
        tmp_path / f"clip.{ext}", n=250, fps=25, image=image, options={"g": "12", "bf": "0"}
    )
    clip = read_frames(path, num_frames=num_frames, seek_gap=0.5)
    assert len(decoded_times) == len(set(decoded_times))
    decoded = full_decode(path)
    targets = (np.arange(num_frames) + 0.5) * clip.duration / num_frames
    for target, frame in zip(targets, clip.frames, strict=True):
        want = max((d for d in decoded if d[0] <= target + 1e-6), key=lambda d: d[0])[1]
        np.testing.assert_array_equal(frame, want)


def test_a_target_just_before_the_next_frame_keeps_the_b_frame_on_screen(tmp_path):
    """Targets 0.5 ms before a frame change, on B-frames nothing refers to (skippable)."""
    options = {"g": "1000", "bf": "3", "x264-params": "b-pyramid=none"}
    path = write_video(tmp_path / "b.mp4", n=40, fps=25, options=options)
    clip = read_frames(path, num_frames=10, fps=1 / 0.0795)
    decoded = full_decode(path)
    for k, frame in enumerate(clip.frames):
        want = max((d for d in decoded if d[0] <= k * 0.0795 + 1e-6), key=lambda d: d[0])[1]
        np.testing.assert_array_equal(frame, want)
