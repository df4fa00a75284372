"""Cached features → padded :class:`~avsent.model.Batch` es for training and inference.

Audio clips differ in length: a batch is padded to its longest clip and carries a mask,
so the encoders ignore the padding. Training crops long clips to a random window
(``max_audio_frames``, see :mod:`avsent.data.windows`) to bound memory and add variety;
evaluation sees whole clips here and scores long ones by windows. Standardisation is
:mod:`avsent.data.normalise`'s; this module only applies it per item.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from avsent.data.cache import FeatureCache
from avsent.data.features import ClipFeatures
from avsent.data.normalise import AudioNorm, normalise_item, read_features, video_to_unit
from avsent.model import Batch


@attrs.frozen
class Sample:
    """One clip's features and its class index (``None`` when unlabelled)."""

    features: ClipFeatures
    label: int | None


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
        utterance_norm: bool = False,
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
        self.utterance_norm = utterance_norm

    def __len__(self) -> int:
        return len(self.items)

    def features(self, index: int) -> ClipFeatures:
        """The whole clip's features as the model sees them: standardised per utterance
        (``utterance_norm``) and per speaker (``audio_norms``) when the dataset was asked to."""
        speaker = self.audio_norms[index] if self.audio_norms is not None else None
        features = read_features(self.cache, self.items[index][0])
        return normalise_item(features, utterance=self.utterance_norm, speaker=speaker)

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
    audio, audio_mask = _pad_time([f.audio for f in feats], time_axis=1)
    video, video_mask = _pad_time([f.video for f in feats], time_axis=0)
    geometry, _ = _pad_time([f.geometry for f in feats], time_axis=0)
    if video is not None:
        video = video_to_unit(video)
    labels = [s.label for s in samples]
    targets = None if any(x is None for x in labels) else torch.tensor(labels, dtype=torch.long)
    return Batch(audio, audio_mask, video, video_mask, geometry, targets)


def _pad_time(
    arrays: list[np.ndarray | None], *, time_axis: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Zero-pad along ``time_axis`` to the longest, stack, and mark real steps. A sample
    without this modality (a file with no video stream, say) is all padding: no real step,
    which is how the model and the fusions see a missing modality."""
    present = [a for a in arrays if a is not None]
    if not present:
        return None, None
    lengths = [0 if a is None else a.shape[time_axis] for a in arrays]
    shape = list(present[0].shape)
    shape[time_axis] = max(max(lengths), 1)
    out = np.zeros((len(arrays), *shape), dtype=present[0].dtype)
    for i, a in enumerate(arrays):
        if a is None:
            continue
        index = [i] + [slice(None)] * a.ndim
        index[1 + time_axis] = slice(0, a.shape[time_axis])
        out[tuple(index)] = a
    mask = torch.arange(shape[time_axis])[None, :] < torch.tensor(lengths)[:, None]
    return torch.from_numpy(out), mask


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
