"""What each component kind takes and returns.

Shapes use B = batch, T = time steps, D = feature width, F = frequency bins, C = channels.
Masks are boolean with ``True`` at real (non-padded) positions. A factory is called as
``factory(config, **dims)``; the dims each kind receives are listed below.

=================  ===============================================  ===============================
kind               factory dims → object                            call
=================  ===============================================  ===============================
audio_frontend     () → :class:`AudioFrontEnd` (+ ``describe``)     waveform [N] → features [F, T]
audio_encoder      (in_features) → nn.Module with ``out_dim``       (x [B,F,T], mask [B,T]) → Tokens
video_encoder      (in_channels, frames, size) → nn.Module, out_dim (x [B,C,T,H,W], mask [B,T]) → Tokens
intra_modal        (dim) → nn.Module with ``out_dim``               Tokens → Tokens
fusion             (audio_dim, video_dim) → nn.Module with out_dim  (Tokens | None, Tokens | None) → [B,D]
head               (in_dim, num_classes) → nn.Module                [B,D] → logits [B,K]
dataset            () → :class:`DatasetSource`                      ``.clips()`` → list[Clip]
face_detector      () → :class:`FaceDetector`                       RGB [H,W,3] → boxes [N,4]
landmark_backend   () → :class:`LandmarkBackend`                    RGB + boxes → points [N,68,2]
face_embedding     (in_channels) → :class:`FaceEmbedding`           uint8 crops [T,S,S,C] → [T, D]
recipe             a :class:`avsent.recipe.Recipe` (data, not a factory)
command            a click command
=================  ===============================================  ===============================

A face embedding (``faces.embedding``) runs once per clip in preprocessing; its vectors are
cached as the video, [T, 1, 1, D] float32, so the video encoder receives ``in_channels`` = D
and ``size`` = 1 (e.g. ``timm-frames-cached``). ``audio_dim``/``video_dim`` are ``None`` for
a modality the recipe leaves out. A head may
define ``extra_loss(features [B,D], targets [B]) -> Tensor`` (e.g. metric learning); the
trainer adds it to the cross-entropy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs
import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class Tokens:
    """A padded token sequence: ``x`` [B, T, D] and ``mask`` [B, T] (True = real).

    A frozen dataclass rather than attrs: TorchDynamo (``torch.compile``) traces these.
    """

    x: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or self.mask.shape != self.x.shape[:2]:
            raise ValueError(
                f"Tokens need x [B,T,D] and mask [B,T]; got {tuple(self.x.shape)} and "
                f"{tuple(self.mask.shape)}"
            )

    def mean(self) -> torch.Tensor:
        """Masked mean over time → [B, D] (:func:`avsent.layers.masks.masked_mean`)."""
        from avsent.layers.masks import masked_mean

        return masked_mean(self.x, self.mask)


@attrs.frozen
class Band:
    """Rows ``start:stop`` of a feature map, named (e.g. ``mel``, ``chroma``).

    ``frequency``: the rows are frequency bins from low to high, so pitch shifts and
    frequency masks may move or cover them. ``db``: the values are levels in dB, so a gain
    is an offset and noise adds in power. Augmentations touch only the bands they fit.
    """

    name: str
    start: int
    stop: int
    frequency: bool = False
    db: bool = False

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)


@attrs.frozen
class FeatureSpec:
    """What an audio front-end's rows mean: the one description every later stage reads
    (model input sizes, augmentation, the cache's shape check), so none guesses a layout."""

    bands: tuple[Band, ...]
    frames_per_second: float

    def __attrs_post_init__(self) -> None:
        if not self.bands:
            raise ValueError("a feature map needs at least one band")
        at = 0
        for band in self.bands:
            if band.start != at or band.stop <= band.start:
                raise ValueError(f"bands must tile the rows in order; {band} after row {at}")
            at = band.stop

    @property
    def rows(self) -> int:
        return self.bands[-1].stop

    def first(self, *, frequency: bool = False, db: bool = False) -> Band | None:
        """The first band with the asked properties, or None (the layout has none)."""
        for band in self.bands:
            if (band.frequency or not frequency) and (band.db or not db):
                return band
        return None


@runtime_checkable
class AudioFrontEnd(Protocol):
    """Waveform → features described by ``spec``. The factory also has
    ``describe(config) -> FeatureSpec``, which says the same without building anything."""

    sample_rate: int
    spec: FeatureSpec

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 samples at ``sample_rate`` → float32 [spec.rows, T]."""
        ...


@runtime_checkable
class FaceEmbedding(Protocol):
    """Face crops → one vector per frame, from a frozen network. The factory also has
    ``describe(config) -> int`` (the width ``dim``, without loading weights) and, when the
    vectors depend on files the config only names, ``identity(config) -> str`` for the
    cache key."""

    dim: int

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops [T, S, S, C] → float32 [T, dim]."""
        ...


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] → int boxes [N, 4] as (x, y, w, h) in that image's pixels."""
        ...


@runtime_checkable
class LandmarkBackend(Protocol):
    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] and boxes [N, 4] (x, y, w, h) → float32 [N, 68, 2] (x, y)."""
        ...


@attrs.frozen
class Clip:
    """One labelled media file."""

    path: Path
    label: str
    speaker: str | None = None
    split: str | None = None  # "train" | "val" | "test" when the dataset fixes it


@runtime_checkable
class DatasetSource(Protocol):
    """A dataset plugin's object: the clips and the class names they use, in order."""

    def clips(self) -> list[Clip]: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...
