"""The one normalisation stage: statistics over the cache, per speaker, into the model."""

from __future__ import annotations

from pathlib import Path

import attrs
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
    item_modes,
    normalise_item,
    set_input_stats,
    set_model_stats,
    speaker_statistics,
    standardise,
    standardise_utterance,
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
    from avsent.run_config import default_run_config

    assert audio_modes(RunConfig()) == ("global",)
    both = default_run_config("mavsa-di", {"data.speaker_norm": True, "data.utterance_norm": True})
    assert audio_modes(both) == ("per-utterance", "per-speaker", "global")
    assert item_modes(both) == ("data.utterance_norm", "data.speaker_norm")
    utterance = default_run_config("mavsa-di", {"data.utterance_norm": True})
    assert audio_modes(utterance) == ("per-utterance", "global")
    assert audio_modes(RunConfig(audio=Choice("none"))) == ()
    assert item_modes(attrs.evolve(both, audio=Choice("none"))) == ()


# -- per utterance: the stage's mode, on the cached dB features -----------------------------


def _old_extraction_time(features: np.ndarray) -> np.ndarray:
    """What mel-chroma's former ``per_utterance_norm`` stored in the cache (its code)."""
    mean = features.mean(axis=1, keepdims=True)
    std = features.std(axis=1, keepdims=True)
    return (features - mean) / np.maximum(std, 1e-5)


def _speech_like(seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(22050 * seconds)) / 22050
    tone = np.sin(2 * np.pi * (180 + 40 * seed) * t) * (0.2 + 0.1 * np.sin(3 * t))
    return (tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_per_utterance_gives_the_numbers_the_front_end_option_gave(tmp_path: Path) -> None:
    """Before: the front-end standardised at extraction and the cache held the result; now
    the cache holds dB and the stage standardises each clip as it is read. Same numbers,
    bit for bit, per speaker and in the global statistics too."""
    from avsent.plugins.audio_features import MelChroma

    frontend = MelChroma()
    raw = [frontend(_speech_like(seed)) for seed in range(4)]
    speakers = ["a", "a", "b", "b"]
    before, after = FeatureCache(tmp_path / "before"), FeatureCache(tmp_path / "after")
    keys = [f"fp/{i:064x}" for i in range(4)]
    for key, features in zip(keys, raw, strict=True):
        before.put(key, ClipFeatures(audio=_old_extraction_time(features)))
        after.put(key, ClipFeatures(audio=features))
    assert after.get(keys[0]).audio.min() < -20  # the cache keeps dB

    items = [(k, 0) for k in keys]
    old_norms = speaker_statistics(before, keys, speakers)
    new_norms = speaker_statistics(after, keys, speakers, utterance=True)
    for old, new in zip(old_norms, new_norms, strict=True):
        np.testing.assert_array_equal(old[0], new[0])
        np.testing.assert_array_equal(old[1], new[1])
    for norms in (None, new_norms):
        old = ClipDataset(items, before, train=False, audio_norms=old_norms if norms else None)
        new = ClipDataset(items, after, train=False, audio_norms=norms, utterance_norm=True)
        for i in range(4):
            np.testing.assert_array_equal(new.features(i).audio, old.features(i).audio)
        old_stats, new_stats = fit_input_stats(old), fit_input_stats(new)
        assert torch.equal(old_stats.audio_mean, new_stats.audio_mean)
        assert torch.equal(old_stats.audio_std, new_stats.audio_std)


def test_per_utterance_standardises_each_whole_clip_before_the_crop(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    audio = np.random.default_rng(3).normal(4.0, 3.0, size=(F, 200)).astype(np.float32)
    audio[1] = -7.0  # a constant row becomes zeros, not inf
    cache.put("fp/a", ClipFeatures(audio=audio))
    whole = normalise_item(cache.get("fp/a"), utterance=True).audio
    np.testing.assert_allclose(np.delete(whole, 1, axis=0).mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.delete(whole, 1, axis=0).std(axis=1), 1.0, atol=1e-4)
    assert (whole[1] == 0).all()
    np.testing.assert_array_equal(whole, standardise_utterance(audio))
    dataset = ClipDataset(
        [("fp/a", 0)], cache, train=True, max_audio_frames=50, utterance_norm=True
    )
    crop = dataset[0].features.audio
    assert crop.shape == (F, 50)
    starts = [s for s in range(151) if np.array_equal(whole[:, s : s + 50], crop)]
    assert starts  # a window of the standardised clip, not a crop standardised on its own
    assert not np.allclose(crop.mean(axis=1), 0.0, atol=1e-3)


def test_without_a_mode_the_features_are_the_cache_s(dataset: ClipDataset) -> None:
    features = dataset.cache.get("fp/1")
    assert normalise_item(features) is features
    np.testing.assert_array_equal(dataset.features(1).audio, features.audio)


def test_the_cache_holds_db_whatever_the_mode(tmp_path: Path) -> None:
    """Preprocessing under per-utterance mode stores the front-end's own output."""
    import soundfile

    from avsent.data.preprocess import preprocess
    from avsent.plugins.audio_features import MelChroma
    from avsent.run_config import default_run_config

    path = tmp_path / "a.wav"
    soundfile.write(path, _speech_like(1), 22050)
    config = default_run_config("drsn-audio", {"data.utterance_norm": True})
    cache = FeatureCache(tmp_path / "cache")
    result = preprocess([path], config, workers=0, progress=False, cache=cache)
    stored = cache.get(result.features[path]).audio
    from avsent.media.audio import load_audio

    np.testing.assert_array_equal(stored, MelChroma()(load_audio(path, 22050)))
    assert stored.min() < -20  # dB, not standard deviations
