"""Cached features → padded :class:`~avsent.model.Batch` es for training and inference.

Audio clips differ in length: a batch is padded to its longest clip and carries a mask,
so the encoders ignore the padding. Training may crop long clips to a random window
(``max_audio_frames``) to bound memory and add variety; evaluation always sees whole clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from avsent.data.cache import FeatureCache
from avsent.data.features import ClipFeatures
from avsent.errors import AvsentError
from avsent.model import Batch


class CacheMissError(AvsentError):
    """A clip's features are not in the cache (run ``avsent preprocess`` first)."""


@attrs.frozen
class Sample:
    """One clip's features and its class index (``None`` when unlabelled)."""

    features: ClipFeatures
    label: int | None


AudioNorm = tuple[np.ndarray, np.ndarray]  #: mean [F], std [F]


class ClipDataset(Dataset):
    """Items ``(cache key, class index)`` read from a :class:`FeatureCache`."""

    def __init__(
        self,
        items: Sequence[tuple[str, int]],
        cache: FeatureCache,
        *,
        train: bool,
        max_audio_frames: int | None = None,
        audio_norms: Sequence[AudioNorm] | None = None,
    ) -> None:
        if max_audio_frames is not None and max_audio_frames < 1:
            raise ValueError(f"max_audio_frames must be >= 1, got {max_audio_frames}")
        if audio_norms is not None and len(audio_norms) != len(items):
            raise ValueError(f"{len(audio_norms)} audio normalisations for {len(items)} items")
        self.items = list(items)
        self.cache = cache
        self.train = train
        self.max_audio_frames = max_audio_frames
        self.audio_norms = list(audio_norms) if audio_norms is not None else None

    def __len__(self) -> int:
        return len(self.items)

    def features(self, index: int) -> ClipFeatures:
        """The whole clip's features as the model sees them (per-speaker standardised
        when the dataset was given ``audio_norms``)."""
        key = self.items[index][0]
        features = self.cache.get(key)
        if features is None:
            raise CacheMissError(
                f"features {key} are missing or damaged in {self.cache.root}; "
                "run `avsent preprocess` to compute them"
            )
        if self.audio_norms is not None and features.audio is not None:
            mean, std = self.audio_norms[index]
            audio = (features.audio - mean[:, None]) / std[:, None]
            features = attrs.evolve(features, audio=audio.astype(np.float32))
        return features

    def __getitem__(self, index: int) -> Sample:
        features = self.features(index)
        audio = features.audio
        limit = self.max_audio_frames
        if self.train and limit is not None and audio is not None and audio.shape[1] > limit:
            # torch's generator, so DataLoader worker seeding makes crops reproducible
            start = int(torch.randint(audio.shape[1] - limit + 1, ()).item())
            features = attrs.evolve(features, audio=audio[:, start : start + limit])
        return Sample(features, self.items[index][1])


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch`, padding audio (and short videos) with masks."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    feats = [s.features for s in samples]
    audio, audio_mask = _pad_time([f.audio for f in feats], time_axis=1, name="audio")
    video, video_mask = _pad_time([f.video for f in feats], time_axis=0, name="video")
    geometry, _ = _pad_time([f.geometry for f in feats], time_axis=0, name="geometry")
    if video is not None:
        # [B, T, S, S, C] uint8 → [B, C, T, S, S] float in [0, 1]
        video = video.permute(0, 4, 1, 2, 3).contiguous().float().div_(255.0)
    labels = [s.label for s in samples]
    targets = None if any(x is None for x in labels) else torch.tensor(labels, dtype=torch.long)
    return Batch(audio, audio_mask, video, video_mask, geometry, targets)


def _pad_time(
    arrays: list[np.ndarray | None], *, time_axis: int, name: str
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Zero-pad along ``time_axis`` to the longest, stack, and mark real steps."""
    present = [a is not None for a in arrays]
    if not any(present):
        return None, None
    if not all(present):
        raise ValueError(f"some samples in the batch have {name} and others do not")
    lengths = [a.shape[time_axis] for a in arrays]
    shape = list(arrays[0].shape)
    shape[time_axis] = max(lengths)
    out = np.zeros((len(arrays), *shape), dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        index = [i] + [slice(None)] * a.ndim
        index[1 + time_axis] = slice(0, a.shape[time_axis])
        out[tuple(index)] = a
    mask = torch.arange(shape[time_axis])[None, :] < torch.tensor(lengths)[:, None]
    return torch.from_numpy(out), mask


def _moments(arrays: Any, axis: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Mean and std per feature over every time step of every array (float64 sums)."""
    total = total_sq = None
    count = 0
    for a in arrays:
        a = np.moveaxis(a.astype(np.float64), axis, 0).reshape(a.shape[axis], -1)
        s, sq = a.sum(axis=1), np.square(a).sum(axis=1)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += a.shape[1]
    if total is None or count == 0:
        return None
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def speaker_audio_norms(
    cache: FeatureCache, keys: Sequence[str], speakers: Sequence[str]
) -> list[AudioNorm]:
    """Per-band mean and std of each speaker's clips, one entry per key.

    The per-speaker standardisation of speech-emotion work: it takes out what is constant
    in a voice and a microphone. It uses no labels, only every clip of the speaker.
    """
    by_speaker: dict[str, list[str]] = {}
    for key, speaker in zip(keys, speakers, strict=True):
        by_speaker.setdefault(speaker, []).append(key)
    norms = {}
    for speaker, speaker_keys in by_speaker.items():
        stats = _moments((a for k in speaker_keys if (a := _audio(cache, k)) is not None), axis=0)
        if stats is None:
            raise ValueError(f"speaker {speaker!r} has no audio features")
        mean, std = (t.numpy() for t in stats)
        norms[speaker] = (mean, np.maximum(std, 1e-5))
    return [norms[s] for s in speakers]


def _audio(cache: FeatureCache, key: str) -> np.ndarray | None:
    features = cache.get(key)
    if features is None:
        raise CacheMissError(f"features {key} are missing or damaged in {cache.root}")
    return features.audio


def compute_audio_stats(dataset: ClipDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std [F] over the dataset's whole clips (for ``set_audio_stats``)."""
    stats = _moments(
        (a for i in range(len(dataset)) if (a := dataset.features(i).audio) is not None), axis=0
    )
    if stats is None:
        raise ValueError("the dataset has no audio features to compute statistics from")
    return stats


def compute_geometry_stats(dataset: ClipDataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-feature mean and std [G] of landmark geometry, or ``None`` without landmarks."""
    return _moments(
        (g for i in range(len(dataset)) if (g := dataset.features(i).geometry) is not None),
        axis=1,
    )


def set_input_stats(model: Any, dataset: ClipDataset) -> None:
    """Fill the model's normalisation buffers from a (training) dataset."""
    if model.uses_audio:
        model.set_audio_stats(*compute_audio_stats(dataset))
    if getattr(model, "geometry_proj", None) is not None:
        stats = compute_geometry_stats(dataset)
        if stats is not None:
            model.geometry_mean.copy_(stats[0])
            model.geometry_std.copy_(stats[1].clamp_min(1e-5))


def make_loader(
    dataset: ClipDataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    device: str | torch.device = "cpu",
    sampler: Sampler | None = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with settings that suit the device.

    The trainer builds one loader per epoch, seeded by (seed, epoch) so a resumed run
    repeats the same order; its workers therefore start once per epoch. Memory is pinned
    only when batches go to a GPU. ``sampler`` (e.g. a DistributedSampler)
    replaces shuffling; ``seed`` fixes the shuffle order and the random crops.
    """
    use_sampler = sampler is not None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and not use_sampler,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.device(device).type == "cuda",
        prefetch_factor=2 if workers > 0 else None,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
