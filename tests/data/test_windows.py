"""Bounded memory: the default training crop, and long clips scored by windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample, collate
from avsent.data.windows import (
    DEFAULT_CROP_SECONDS,
    crop_frames,
    stream_windows,
    streamed_logits,
    window_starts,
    windowed_logits,
)
from avsent.model import InputSpec, audio_feature_spec, compose
from avsent.run_config import RunConfig, TrainConfig

F = 12
INPUTS = InputSpec(audio_features=F, video_channels=3, video_frames=4, video_size=16)


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    parts = {"stem_channels": 4, "widths": [4, 8], "units_per_stage": 1}
    return compose(audio=("drsn", parts), fusion="passthrough", inputs=INPUTS).eval()


def _batch(*lengths: int) -> tuple[list[np.ndarray], object]:
    rng = np.random.default_rng(1)
    audio = [rng.normal(size=(F, n)).astype(np.float32) for n in lengths]
    return audio, collate([Sample(ClipFeatures(audio=a), None) for a in audio])


def test_windows_cover_the_clip_and_end_at_its_end() -> None:
    assert window_starts(30, 40, 20) == [0]
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(105, 40, 20) == [0, 20, 40, 60, 65]


@torch.no_grad()
def test_a_long_clip_scores_the_mean_of_its_windows(model) -> None:
    audio, batch = _batch(30, 105)
    logits = windowed_logits(model, batch, window=40, hop=20)
    windows = [
        model(collate([Sample(ClipFeatures(audio=audio[1][:, s : s + 40]), None)])).logits[0]
        for s in window_starts(105, 40, 20)
    ]
    torch.testing.assert_close(logits[1], torch.stack(windows).mean(0), rtol=1e-5, atol=1e-5)
    short = model(collate([Sample(ClipFeatures(audio=audio[0]), None)])).logits[0]
    torch.testing.assert_close(logits[0], short, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_clips_within_the_window_are_scored_whole(model) -> None:
    _, batch = _batch(30, 40)
    assert torch.equal(windowed_logits(model, batch, window=40), model(batch).logits)
    assert torch.equal(windowed_logits(model, batch, window=None), model(batch).logits)


@torch.no_grad()
def test_windows_go_through_the_model_a_batch_at_a_time(model, monkeypatch) -> None:
    _, batch = _batch(400, 20)  # 19 windows of the long clip + 1 for the short one
    sizes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda b: sizes.append(b.size) or forward(b))
    windowed_logits(model, batch, window=40)
    assert max(sizes) <= batch.size and sum(sizes) == 20


@pytest.mark.parametrize("length", [1, 39, 40, 41, 100, 105, 263])
@pytest.mark.parametrize("chunk", [1, 7, 40, 300])
def test_streamed_windows_are_the_pieces_of_the_whole_clip(length, chunk) -> None:
    audio = np.random.default_rng(0).normal(size=(F, length)).astype(np.float32)
    chunks = [audio[:, s : s + chunk] for s in range(0, length, chunk)]
    got = list(stream_windows(iter(chunks), window=40, hop=20))
    expected = [audio[:, s : s + 40] for s in window_starts(length, 40, 20)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@torch.no_grad()
def test_streamed_logits_are_the_windowed_logits_of_the_clip(model, monkeypatch) -> None:
    audio, batch = _batch(263)
    expected = windowed_logits(model, batch, window=40)[0]
    sizes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda b: sizes.append(b.size) or forward(b))
    chunks = (audio[0][:, s : s + 50] for s in range(0, 263, 50))
    got = streamed_logits(model, stream_windows(chunks, window=40), ClipFeatures(), per_pass=3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert max(sizes) == 3 and sum(sizes) == len(window_starts(263, 40, 20))


def test_the_default_crop_is_ten_seconds_of_the_front_ends_frames() -> None:
    config = RunConfig()
    fps = audio_feature_spec(config).frames_per_second
    assert crop_frames(config) == round(DEFAULT_CROP_SECONDS * fps) == 431
    assert crop_frames(RunConfig(train=TrainConfig(max_audio_frames=0))) is None
    assert crop_frames(RunConfig(train=TrainConfig(max_audio_frames=50))) == 50
    with pytest.raises(ValueError, match="auto"):
        TrainConfig(max_audio_frames=-1)
