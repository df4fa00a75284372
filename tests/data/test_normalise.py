"""The one normalisation stage: statistics over the cache, per speaker, into the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsent.config import Choice
from avsent.data.cache import FeatureCache
from avsent.data.features import ClipFeatures
from avsent.data.loader import ClipDataset, collate
from avsent.data.normalise import (
    VIDEO_MEAN,
    VIDEO_STD,
    InputStats,
    audio_modes,
    fit_input_stats,
    set_input_stats,
    set_model_stats,
    speaker_statistics,
    standardise,
    standardise_video,
)
from avsent.model import InputSpec, compose
from avsent.run_config import RunConfig

F, S, G = 5, 8, 3


def _clip(frames: int, value: float) -> ClipFeatures:
    audio = np.arange(F * frames, dtype=np.float32).reshape(F, frames) + value
    video = np.full((4, S, S, 3), 255, dtype=np.uint8)
    geometry = np.full((4, G), value, dtype=np.float32)
    return ClipFeatures(audio=audio, video=video, geometry=geometry, face_fraction=1.0)


@pytest.fixture
def dataset(tmp_path: Path) -> ClipDataset:
    cache = FeatureCache(tmp_path)
    for i, frames in enumerate([7, 12, 20]):
        cache.put(f"fp/{i}", _clip(frames, float(i)))
    return ClipDataset([(f"fp/{i}", i) for i in range(3)], cache, train=False)


def test_stats_match_numpy_over_all_frames(dataset: ClipDataset) -> None:
    stats = fit_input_stats(dataset)
    frames = np.concatenate([dataset.features(i).audio for i in range(3)], axis=1)
    np.testing.assert_allclose(stats.audio_mean.numpy(), frames.mean(1), rtol=1e-5)
    np.testing.assert_allclose(stats.audio_std.numpy(), frames.std(1), rtol=1e-4)
    assert stats.audio_mean.shape == (F,) and stats.audio_mean.dtype == torch.float32
    assert stats.geometry_mean.shape == (G,)
    np.testing.assert_allclose(stats.geometry_mean.numpy(), 1.0)  # 0, 1, 2 over 4 frames each
    np.testing.assert_allclose(stats.geometry_std.numpy(), np.sqrt(2 / 3), rtol=1e-5)


def test_geometry_stats_none_without_landmarks(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/a", ClipFeatures(audio=np.ones((F, 3), np.float32)))
    stats = fit_input_stats(ClipDataset([("fp/a", 0)], cache, train=True))
    assert stats.geometry_mean is None and stats.audio_mean is not None


def test_statistics_are_read_in_one_pass(dataset: ClipDataset, monkeypatch) -> None:
    reads = []
    original = dataset.features
    monkeypatch.setattr(dataset, "features", lambda i: reads.append(i) or original(i))
    fit_input_stats(dataset)
    assert reads == [0, 1, 2]  # audio and geometry from one read of each clip


def test_speaker_statistics_standardise_each_speakers_clips(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    rng = np.random.default_rng(0)
    keys, speakers = [], []
    for i, (speaker, offset) in enumerate([("a", 5.0), ("a", 5.0), ("b", -3.0)]):
        key = f"fp/{i:064x}"
        cache.put(key, ClipFeatures(audio=(rng.normal(size=(4, 30)) + offset).astype(np.float32)))
        keys.append(key)
        speakers.append(speaker)
    norms = speaker_statistics(cache, keys, speakers)
    assert norms[0] is norms[1] and not np.allclose(norms[0][0], norms[2][0])
    dataset = ClipDataset([(k, 0) for k in keys], cache, train=False, audio_norms=norms)
    joined = np.concatenate([dataset.features(i).audio for i in (0, 1)], axis=1)
    np.testing.assert_allclose(joined.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(joined.std(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(dataset.features(2).audio.mean(axis=1), 0.0, atol=1e-5)
    # the global step then sees standardised audio: zero mean, unit std over these clips
    stats = fit_input_stats(dataset)
    np.testing.assert_allclose(stats.audio_mean.numpy(), 0.0, atol=1e-5)


def test_model_buffers_hold_the_statistics_clamped(dataset: ClipDataset) -> None:
    inputs = InputSpec(audio_features=F, video_channels=3, video_frames=4, video_size=S)
    model = compose(audio=("drsn", {"widths": [8, 16]}), fusion="passthrough", inputs=inputs)
    set_input_stats(model, dataset)
    stats = fit_input_stats(dataset)
    assert torch.equal(model.audio_mean, stats.audio_mean)
    set_model_stats(model, InputStats(torch.zeros(F), torch.zeros(F)))
    assert model.audio_std.min() > 0  # a constant band never divides by zero


def test_applying_matches_the_formulas(dataset: ClipDataset) -> None:
    batch = collate([dataset[0], dataset[1]])
    assert batch.video.max() == 1.0  # uint8 255 → 1.0
    np.testing.assert_allclose(
        standardise_video(batch.video).numpy(), (batch.video.numpy() - VIDEO_MEAN) / VIDEO_STD
    )
    mean, std = torch.arange(F, dtype=torch.float32), torch.full((F,), 2.0)
    expected = (batch.audio - mean[:, None]) / std[:, None]
    assert torch.equal(standardise(batch.audio, mean, std, axis=1), expected)


def test_modes_name_each_standardisation() -> None:
    from avsent.config import apply_overrides, from_dict, to_dict

    config = RunConfig()
    assert audio_modes(config) == ("global",)
    data = apply_overrides(
        to_dict(config),
        {"data.speaker_norm": True, "audio_frontend.per_utterance_norm": True},
        RunConfig,
    )
    assert audio_modes(from_dict(RunConfig, data)) == ("per-utterance", "per-speaker", "global")
    assert audio_modes(RunConfig(audio=Choice("none"))) == ()
