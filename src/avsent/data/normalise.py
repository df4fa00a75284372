"""The one place that knows how model inputs are standardised, and with what statistics.

The feature cache holds the front-ends' own units (for mel-chroma: log-mel in dB, chroma
in [0, 1]) whatever the mode. Audio then passes through up to three standardisations, in
this order:

* **per utterance** (``data.utterance_norm``) — each row of a clip to zero mean and unit
  std over that clip's own frames (:func:`standardise_utterance`): level- and
  microphone-free, and it needs only the clip, so single-file prediction can use it;
* **per speaker** (``data.speaker_norm``) — each clip with its speaker's statistics over all
  of that speaker's clips (:func:`speaker_statistics`);
* **global** (always) — per-band mean and std of the training clips (after the per-item
  steps). These are stored in the model's buffers so they travel with the checkpoint;
  :func:`set_model_stats` fills them and :func:`standardise` applies them in the forward
  pass.

The two per-item steps are applied to each whole clip as it is read (:func:`normalise_item`,
called by the loader and by prediction), so before the training crop, the windows of long
clips and augmentation. Augmentation therefore works in the cache's units (dB) only when no
per-item step is on; with one, the rows are standard deviations and the dB augmentations are
refused (:func:`item_modes`, asked by ``avsent.training.augment.check_augment``).

Video crops are uint8 in the cache; batches carry them in [0, 1] (:func:`video_to_unit`,
what augmentation expects) and the model standardises them with fixed constants
(:func:`standardise_video`); a face embedding (``faces.embedding``) standardises the crops
the same way before its network, and its cached vectors reach the encoder as they are.
Landmark geometry is standardised globally like audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import attrs
import numpy as np
import torch

from avsent.config import NONE
from avsent.data.cache import FeatureCache
from avsent.data.features import ClipFeatures
from avsent.errors import CacheMissError, ConfigError

#: uint8 pixel → [0, 1]
VIDEO_SCALE = 255.0
#: fixed standardisation of [0, 1] face crops (no statistics: crops are already aligned)
VIDEO_MEAN, VIDEO_STD = 0.5, 0.25
#: smallest standard deviation divided by: a constant band must not become inf
MIN_STD = 1e-5

AudioNorm = tuple[np.ndarray, np.ndarray]  #: mean [F], std [F]


class FeatureSource(Protocol):
    """What statistics are fitted over: clip features by index (a ``ClipDataset``)."""

    def __len__(self) -> int: ...

    def features(self, index: int) -> ClipFeatures: ...


@attrs.frozen
class InputStats:
    """Global statistics of the training clips, as the model's buffers hold them."""

    audio_mean: torch.Tensor | None = None  #: [F]
    audio_std: torch.Tensor | None = None
    geometry_mean: torch.Tensor | None = None  #: [G]
    geometry_std: torch.Tensor | None = None


#: the per-item standardisations in the order applied: (``data`` field, name in reports)
_ITEM_MODES = (("utterance_norm", "per-utterance"), ("speaker_norm", "per-speaker"))


def item_modes(config: Any) -> tuple[str, ...]:
    """The config fields of the per-item standardisations ``config`` turns on, in order.

    They run before augmentation, so with any of them the batch is no longer in dB."""
    if config.audio.name == NONE:
        return ()
    return tuple(f"data.{field}" for field, _ in _ITEM_MODES if getattr(config.data, field))


def audio_modes(config: Any) -> tuple[str, ...]:
    """The standardisations audio goes through under ``config``, in order (for reports)."""
    if config.audio.name == NONE:
        return ()
    names = dict(_ITEM_MODES)
    return (*(names[mode.removeprefix("data.")] for mode in item_modes(config)), "global")


# -- applying -----------------------------------------------------------------------------


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, axis: int) -> torch.Tensor:
    """(x − mean) / std with the [D] statistics broadcast along ``axis`` of ``x``."""
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - mean.view(shape)) / std.view(shape)


def video_to_unit(video: torch.Tensor) -> torch.Tensor:
    """uint8 crops [B, T, S, S, C] → float [B, C, T, S, S] in [0, 1] (the batch layout);
    float face embeddings [B, T, 1, 1, D] are only moved into that layout."""
    unit = video.permute(0, 4, 1, 2, 3).contiguous().float()
    return unit.div_(VIDEO_SCALE) if video.dtype == torch.uint8 else unit


def standardise_video(video: torch.Tensor) -> torch.Tensor:
    """[0, 1] crops → the encoder's input scale."""
    return (video - VIDEO_MEAN) / VIDEO_STD


def standardise_utterance(audio: np.ndarray) -> np.ndarray:
    """Each row of one clip's float32 [F, T] to zero mean and unit std over its frames
    (the std floored at :data:`MIN_STD`, so a constant row becomes zeros, not inf)."""
    mean = audio.mean(axis=1, keepdims=True)
    std = audio.std(axis=1, keepdims=True)
    return (audio - mean) / np.maximum(std, MIN_STD)


def standardise_utterance_chunks(
    first_pass: Iterable[np.ndarray], second_pass: Iterable[np.ndarray]
) -> Iterator[np.ndarray]:
    """:func:`standardise_utterance` of a clip whose features [F, t] arrive in chunks along
    time, holding a chunk and not the clip: the rows' moments are summed over
    ``first_pass``, then each chunk of ``second_pass`` (the same chunks, read again) is
    standardised with them. Equal to the whole clip's result up to float rounding."""
    moments = Moments(axis=0)
    for chunk in first_pass:
        moments.add(chunk)
    stats = moments.result()
    if stats is None:
        raise ValueError("no audio frames to standardise")
    mean, std = (t.numpy()[:, None] for t in stats)
    floor = np.maximum(std, np.float32(MIN_STD))
    for chunk in second_pass:
        yield ((chunk - mean) / floor).astype(np.float32, copy=False)


def normalise_item(
    features: ClipFeatures, *, utterance: bool = False, speaker: AudioNorm | None = None
) -> ClipFeatures:
    """One whole clip's features with the per-item standardisations applied, in order:
    per utterance (``utterance``), then with its speaker's statistics (``speaker``)."""
    audio = features.audio
    if audio is None or (not utterance and speaker is None):
        return features
    if utterance:
        audio = standardise_utterance(audio)
    if speaker is not None:
        mean, std = speaker
        audio = (audio - mean[:, None]) / std[:, None]
    return attrs.evolve(features, audio=audio.astype(np.float32, copy=False))


def set_model_stats(model: Any, stats: InputStats) -> None:
    """Write ``stats`` into the model's buffers (std clamped), so the checkpoint keeps them."""
    with torch.no_grad():
        if stats.audio_mean is not None and model.uses_audio:
            model.audio_mean.copy_(stats.audio_mean)
            model.audio_std.copy_(stats.audio_std.clamp_min(MIN_STD))
        if stats.geometry_mean is not None and getattr(model, "geometry_proj", None) is not None:
            model.geometry_mean.copy_(stats.geometry_mean)
            model.geometry_std.copy_(stats.geometry_std.clamp_min(MIN_STD))


def set_input_stats(model: Any, source: FeatureSource) -> None:
    """Fit the global statistics on (training) ``source`` and store them in ``model``."""
    set_model_stats(model, fit_input_stats(source, audio=model.uses_audio))


# -- statistics ---------------------------------------------------------------------------


class Moments:
    """Running float64 sums for a per-feature mean and std over time steps (``axis``: the
    feature axis of the arrays added)."""

    def __init__(self, axis: int) -> None:
        self.axis = axis
        self.total: np.ndarray | None = None
        self.total_sq: np.ndarray | None = None
        self.count = 0

    def add(self, a: np.ndarray | None) -> None:
        if a is None:
            return
        a = np.moveaxis(a.astype(np.float64), self.axis, 0).reshape(a.shape[self.axis], -1)
        s, sq = a.sum(axis=1), np.square(a).sum(axis=1)
        self.total = s if self.total is None else self.total + s
        self.total_sq = sq if self.total_sq is None else self.total_sq + sq
        self.count += a.shape[1]

    def result(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.total is None or self.count == 0:
            return None
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0))
        return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def fit_input_stats(source: FeatureSource, *, audio: bool = True) -> InputStats:
    """Global audio and geometry statistics of ``source``'s whole clips, in one pass.

    The audio is what the model receives (per-speaker standardised when ``source`` is),
    so the global step comes out near zero mean and unit std in that mode.
    """
    audio_m, geometry_m = Moments(axis=0), Moments(axis=1)
    for i in range(len(source)):
        features = source.features(i)
        if audio:
            audio_m.add(features.audio)
        geometry_m.add(features.geometry)
    audio_stats = audio_m.result() if audio else None
    if audio and audio_stats is None:
        raise ValueError("the dataset has no audio features to compute statistics from")
    geometry_stats = geometry_m.result()
    return InputStats(*(audio_stats or (None, None)), *(geometry_stats or (None, None)))


def speaker_statistics(
    cache: FeatureCache, keys: Sequence[str], speakers: Sequence[str], *, utterance: bool = False
) -> list[AudioNorm]:
    """Per-band mean and std of each speaker's clips, one entry per key (of the clips as the
    per-utterance step leaves them, with ``utterance``, since that step comes first).

    The per-speaker standardisation of speech-emotion work: it takes out what is constant
    in a voice and a microphone. It uses no labels, only every clip of the speaker.
    """
    by_speaker: dict[str, list[str]] = {}
    for key, speaker in zip(keys, speakers, strict=True):
        by_speaker.setdefault(speaker, []).append(key)
    norms = {}
    for speaker, speaker_keys in by_speaker.items():
        moments = Moments(axis=0)
        for key in speaker_keys:
            features = normalise_item(read_features(cache, key), utterance=utterance)
            moments.add(features.audio)
        stats = moments.result()
        if stats is None:
            raise ValueError(f"speaker {speaker!r} has no audio features")
        mean, std = (t.numpy() for t in stats)
        norms[speaker] = (mean, np.maximum(std, MIN_STD))
    return [norms[s] for s in speakers]


def speaker_norms_for(
    config: Any, cache: FeatureCache, clips: Iterable[Any], keys: dict[str, str]
) -> dict[str, AudioNorm] | None:
    """{clip path: its speaker's statistics} when ``data.speaker_norm`` asks for them.

    ``keys`` maps each usable clip's path (str) to its cache key; the statistics pool every
    clip given, so pass all of a speaker's clips, as training does.
    """
    if not config.data.speaker_norm or config.audio.name == NONE:
        return None
    clips = list(clips)
    nameless = [c.path for c in clips if not c.speaker]
    if nameless:
        raise ConfigError(
            "data.speaker_norm", f"needs a speaker for every clip; {nameless[0]} has none"
        )
    paths = [str(c.path) for c in clips]
    found = speaker_statistics(
        cache,
        [keys[p] for p in paths],
        [c.speaker for c in clips],
        utterance=config.data.utterance_norm,
    )
    return dict(zip(paths, found, strict=True))


def read_features(cache: FeatureCache, key: str) -> ClipFeatures:
    """The cached features of ``key``; a clear error when they are missing or damaged."""
    features = cache.get(key)
    if features is None:
        raise CacheMissError(
            f"features {key} are missing or damaged in {cache.root}; "
            "run `avsent preprocess` to compute them"
        )
    return features
