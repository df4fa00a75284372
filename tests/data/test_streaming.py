"""Features by chunks: the whole file's features, holding a chunk of samples at a time."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from avsent.data.normalise import standardise_utterance, standardise_utterance_chunks
from avsent.data.streaming import feature_chunks, segments, streamable
from avsent.media.audio import load_audio, stream_audio
from avsent.plugins.audio_features import MelChroma, MelChromaConfig

RATE = 22050
CHUNK = 431  # the default window: 10 s of 512-sample frames


def _speechlike(seconds: float, rate: int) -> np.ndarray:
    """Noise under a wandering tone: every row of the features moves."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.2 * np.sin(0.5 * t)))
    return (tone * (1 + np.sin(0.1 * t)) / 2 + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "three-minutes.flac"
    soundfile.write(path, _speechlike(180.0, 44100), 44100)  # resampled while decoding
    return path


@pytest.fixture(scope="module")
def long_mp4(tmp_path_factory) -> Path:
    """Two minutes of AAC in an mp4, written with PyAV."""
    path = tmp_path_factory.mktemp("long") / "two-minutes.mp4"
    samples = _speechlike(120.0, 16000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for start in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _chunked(frontend: MelChroma, path: Path, chunk: int = CHUNK) -> list[np.ndarray]:
    return list(feature_chunks(frontend, stream_audio(path, RATE), chunk))


@pytest.mark.parametrize("media", ["long_flac", "long_mp4"])
def test_chunks_join_to_the_whole_file_s_features(media, request) -> None:
    path = request.getfixturevalue(media)
    frontend = MelChroma()
    whole = frontend(load_audio(path, RATE))
    chunks = _chunked(frontend, path)
    assert len(chunks) > 10 and {c.shape[1] for c in chunks[:-1]} == {CHUNK}
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole, rtol=1e-5, atol=1e-4)


def test_per_utterance_standardisation_of_chunks_is_the_whole_file_s(long_flac) -> None:
    frontend = MelChroma()
    chunks = standardise_utterance_chunks(
        _chunked(frontend, long_flac), _chunked(frontend, long_flac)
    )
    whole = standardise_utterance(frontend(load_audio(long_flac, RATE)))
    np.testing.assert_allclose(np.concatenate(list(chunks), axis=1), whole, rtol=1e-4, atol=1e-4)


def test_a_short_file_is_one_chunk_bit_for_bit(tmp_path) -> None:
    path = tmp_path / "short.wav"
    soundfile.write(path, _speechlike(9.0, RATE), RATE)
    frontend = MelChroma()
    [chunk] = _chunked(frontend, path)
    np.testing.assert_array_equal(chunk, frontend(load_audio(path, RATE)))


def test_segments_hold_a_chunk_and_its_context_never_the_file() -> None:
    hop, context, chunk = 4, 2, 10
    samples = np.arange(1000, dtype=np.float32)
    blocks = np.array_split(samples, 37)
    pieces = list(segments(blocks, hop, context, chunk))
    largest_block = max(b.size for b in blocks)
    assert max(p.samples.size for p in pieces) <= (chunk + 2 * context) * hop + largest_block
    # each kept frame's centre sample is where the whole file's frame t is centred: t · hop
    centres = []
    for piece in pieces:
        start = int(piece.samples[0])
        frames = 1 + piece.samples.size // hop
        kept = range(frames)[
            piece.skip : None if piece.frames is None else piece.skip + piece.frames
        ]
        centres += [start + j * hop for j in kept]
    assert centres == [t * hop for t in range(1 + samples.size // hop)]
    with pytest.raises(ValueError, match="context"):
        next(segments(blocks, hop, context, chunk_frames=1))


@pytest.mark.parametrize("whole_clip_field", [{"tuning": None}, {"top_db": 80.0}])
def test_front_ends_with_whole_clip_statistics_do_not_stream(whole_clip_field) -> None:
    assert streamable(MelChroma())
    frontend = MelChroma(MelChromaConfig(**whole_clip_field))
    assert not streamable(frontend)
    with pytest.raises(ValueError, match="by chunks"):
        next(feature_chunks(frontend, lambda: [], CHUNK))
