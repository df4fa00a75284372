"""Dataset, collation into Batches, the DataLoader factory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsent.data.cache import FeatureCache
from avsent.data.features import ClipFeatures
from avsent.data.loader import ClipDataset, Sample, collate, make_loader
from avsent.errors import CacheMissError

F, S, G = 5, 8, 3


def _clip(frames: int, video_frames: int = 4, value: float = 0.0) -> ClipFeatures:
    audio = np.arange(F * frames, dtype=np.float32).reshape(F, frames) + value
    video = np.full((video_frames, S, S, 3), 255, dtype=np.uint8)
    video[..., 0] = 0
    geometry = np.full((video_frames, G), value, dtype=np.float32)
    return ClipFeatures(audio=audio, video=video, geometry=geometry, face_fraction=1.0)


@pytest.fixture
def dataset(tmp_path: Path) -> ClipDataset:
    cache = FeatureCache(tmp_path)
    items = []
    for i, frames in enumerate([7, 12, 20]):
        cache.put(f"fp/{i}", _clip(frames, value=float(i)))
        items.append((f"fp/{i}", i))
    return ClipDataset(items, cache, train=False)


def test_collate_pads_audio_and_masks_padding(dataset: ClipDataset) -> None:
    batch = collate([dataset[0], dataset[1], dataset[2]])
    assert batch.audio.shape == (3, F, 20) and batch.audio.dtype == torch.float32
    assert batch.audio_mask.tolist()[0] == [True] * 7 + [False] * 13
    assert batch.audio_mask.sum(1).tolist() == [7, 12, 20]
    assert torch.equal(batch.audio[0, :, :7], torch.from_numpy(dataset.features(0).audio))
    assert batch.audio[0, :, 7:].abs().sum() == 0
    assert batch.targets.tolist() == [0, 1, 2] and batch.targets.dtype == torch.long
    assert batch.size == 3


def test_collate_video_is_channels_first_in_unit_range(dataset: ClipDataset) -> None:
    batch = collate([dataset[0], dataset[1]])
    assert batch.video.shape == (2, 3, 4, S, S) and batch.video.dtype == torch.float32
    assert batch.video[:, 0].max() == 0.0 and batch.video[:, 1:].min() == 1.0
    assert batch.video_mask.all() and batch.video_mask.shape == (2, 4)
    assert batch.geometry.shape == (2, 4, G)
    assert batch.geometry[1].eq(1.0).all()


def test_collate_pads_a_short_video(tmp_path: Path) -> None:
    batch = collate([Sample(_clip(5, video_frames=4), 0), Sample(_clip(5, video_frames=2), 1)])
    assert batch.video.shape[2] == 4
    assert batch.video_mask.tolist() == [[True] * 4, [True, True, False, False]]


def test_collate_audio_only_and_unlabelled() -> None:
    batch = collate([Sample(ClipFeatures(audio=np.ones((F, 3), np.float32)), None)])
    assert batch.video is None and batch.video_mask is None and batch.geometry is None
    assert batch.targets is None and batch.audio.shape == (1, F, 3)


def test_a_clip_without_a_modality_is_all_padding_in_it() -> None:
    """A file with no video stream, batched with one that has video: its video row has no
    real step (and zeros), which the model reads as a missing modality."""
    with_video = Sample(_clip(3), 0)
    without = Sample(ClipFeatures(audio=np.ones((F, 3), np.float32)), 0)
    batch = collate([with_video, without])
    assert batch.video_mask[0].all() and not batch.video_mask[1].any()
    assert torch.equal(batch.video[1], torch.zeros_like(batch.video[1]))
    assert batch.audio_mask.all()


def test_training_crops_audio_to_a_random_window(dataset: ClipDataset) -> None:
    train = ClipDataset(dataset.items, dataset.cache, train=True, max_audio_frames=10)
    whole = dataset.features(2).audio
    starts = set()
    torch.manual_seed(0)
    for _ in range(30):
        crop = train[2].features.audio
        assert crop.shape == (F, 10)
        start = int(crop[0, 0])  # row 0 of clip 2 is arange + 2
        start -= 2
        np.testing.assert_array_equal(crop, whole[:, start : start + 10])
        starts.add(start)
    assert len(starts) > 1
    assert train[0].features.audio.shape == (F, 7)  # shorter clips are left whole


def test_evaluation_sees_whole_clips(dataset: ClipDataset) -> None:
    evaluation = ClipDataset(dataset.items, dataset.cache, train=False, max_audio_frames=10)
    assert evaluation[2].features.audio.shape == (F, 20)


def test_missing_entry_names_the_fix(tmp_path: Path) -> None:
    data = ClipDataset([("fp/gone", 0)], FeatureCache(tmp_path), train=False)
    with pytest.raises(CacheMissError, match="avsent preprocess"):
        data[0]


def test_loader_yields_batches_reproducibly(dataset: ClipDataset) -> None:
    def orders() -> list[list[int]]:
        loader = make_loader(dataset, batch_size=2, shuffle=True, workers=0, seed=3)
        return [batch.targets.tolist() for batch in loader]

    first = orders()
    assert sorted(t for batch in first for t in batch) == [0, 1, 2]
    assert [len(b) for b in first] == [2, 1]
    assert orders() == first
    loader = make_loader(dataset, batch_size=2, shuffle=False, workers=0)
    assert not loader.pin_memory


def test_loader_with_worker_processes(dataset: ClipDataset) -> None:
    loader = make_loader(dataset, batch_size=3, shuffle=False, workers=1)
    batches = list(loader)
    assert len(batches) == 1 and batches[0].audio.shape == (3, F, 20)
    assert loader.num_workers == 1 and not loader.persistent_workers  # one loader per epoch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_loader_pins_batches_for_a_gpu(dataset: ClipDataset) -> None:
    loader = make_loader(dataset, batch_size=2, shuffle=False, workers=0, device="cuda")
    batch = next(iter(loader))
    assert batch.audio.is_pinned() and batch.video.is_pinned() and batch.targets.is_pinned()
