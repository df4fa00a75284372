"""A trained model plus its front-ends: media file in, class probabilities out.

>>> pipe = Pipeline.from_run("runs/mavsa-di-2026...")  # doctest: +SKIP
>>> pipe.predict("clip.mp4")  # doctest: +SKIP
{'sad': 0.02, 'angry': 0.71, ...}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from avsent.config import NONE, Choice
from avsent.data.features import ClipFeatures, FeatureExtractor, uses_audio, uses_video
from avsent.data.loader import Sample, collate
from avsent.data.normalise import audio_modes
from avsent.data.windows import crop_frames, windowed_logits
from avsent.errors import AvsentError, ConfigError, MediaError
from avsent.model import AVModel


def _only(config: Any, modality: str) -> Any:
    """``config`` with the other modality's encoder slot emptied (``video = "none"``)."""
    other = "video" if modality == "audio" else "audio"
    return attrs.evolve(config, **{other: Choice(NONE)})


@attrs.frozen
class Prediction:
    """One file's outcome: probabilities per class and the modalities they came from
    (``audio``, ``video`` or ``audio+video``), or the reason the file could not be read."""

    path: Path
    probabilities: dict[str, float] | None = None
    error: str | None = None
    modalities: str | None = None

    @property
    def label(self) -> str | None:
        """The most probable class, or ``None`` for a failed file."""
        if self.probabilities is None:
            return None
        return max(self.probabilities, key=self.probabilities.__getitem__)


class Pipeline:
    """Extracts features in-process (no cache) and runs the model in eval mode.

    Batches, normalisation and long-clip windows are evaluation's own (``collate``,
    :mod:`avsent.data.normalise`, :mod:`avsent.data.windows`), so a file scores as it
    would from the cache.
    """

    def __init__(self, model: AVModel, config: Any) -> None:
        if model.uses_audio != uses_audio(config) or model.uses_video != uses_video(config):
            raise ConfigError(
                "audio" if model.uses_audio != uses_audio(config) else "video",
                "the config's modalities do not match the model's encoders",
            )
        if "per-speaker" in audio_modes(config):
            raise ConfigError(
                "data.speaker_norm",
                "this model was trained on per-speaker standardised audio, which single files "
                "cannot supply; score it with `avsent evaluate RUN --data ...` on clips with speakers",
            )
        self.model = model.eval()
        self.config = config
        self.window = crop_frames(config)
        self._extractors: dict[str, FeatureExtractor] | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, which: str = "best") -> Pipeline:
        """The pipeline of a finished (or checkpointed) training run; ``which`` is ``best``
        or ``last`` for a run folder (a checkpoint file is used as it is)."""
        from avsent.training.checkpoint import load_model

        model, config = load_model(run_dir, which)
        return cls(model, config)

    @property
    def modalities(self) -> str:
        """What the model looks at: ``audio``, ``video`` or ``audio+video``."""
        used = (("audio", self.model.uses_audio), ("video", self.model.uses_video))
        return "+".join(name for name, on in used if on)

    @property
    def extractors(self) -> dict[str, FeatureExtractor]:
        """One extractor per modality the model uses, so a file lacking one (no video
        stream, no face, no audio track) is still scored from the other."""
        if self._extractors is None:  # built on first use: front-ends may load weights
            self._extractors = {}
            if self.model.uses_audio:
                self._extractors["audio"] = FeatureExtractor(_only(self.config, "audio"))
            if self.model.uses_video:
                self._extractors["video"] = FeatureExtractor(_only(self.config, "video"))
        return self._extractors

    def extract(self, path: str | Path) -> tuple[ClipFeatures, str]:
        """The features of ``path`` and the modalities found; raises the first problem
        (MediaError, NoFaceError) when no modality the model uses can be read."""
        parts: dict[str, ClipFeatures] = {}
        problems: list[AvsentError] = []
        for name, extractor in self.extractors.items():
            try:
                parts[name] = extractor.extract(path)
            except MediaError as exc:
                problems.append(exc)
        if not parts:
            raise problems[0]
        audio, video = parts.get("audio"), parts.get("video")
        features = ClipFeatures(
            audio=audio.audio if audio else None,
            video=video.video if video else None,
            geometry=video.geometry if video else None,
            face_fraction=video.face_fraction if video else None,
        )
        return features, "+".join(parts)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, path: str | Path) -> dict[str, float]:
        """Class → probability for one file; raises MediaError/NoFaceError for bad input."""
        return _finite(Path(path), self._classify([self.extract(path)[0]])[0])

    @torch.no_grad()
    def _classify(self, features: Sequence[ClipFeatures]) -> list[dict[str, float]]:
        """One forward pass over a batch of clips (padded with masks, as in evaluation; a
        long clip scored by windows)."""
        batch = collate([Sample(f, None) for f in features]).to(self.device)
        self.model.eval()
        logits = windowed_logits(self.model, batch, self.window)
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        names = self.model.class_names
        return [{n: float(p) for n, p in zip(names, row, strict=True)} for row in probs]

    def predict_many(self, paths: Iterable[str | Path], batch_size: int = 8) -> list[Prediction]:
        """One :class:`Prediction` per file, in order, ``batch_size`` files per forward pass;
        a failing file gets its error and does not stop the rest."""
        if batch_size < 1:
            raise ConfigError("--batch-size", f"must be at least 1, got {batch_size}")
        results: list[Prediction] = []
        pending: list[tuple[int, ClipFeatures]] = []
        for path in map(Path, paths):
            try:
                features, found = self.extract(path)
                pending.append((len(results), features))
                results.append(Prediction(path, modalities=found))
            except AvsentError as exc:
                results.append(Prediction(path, error=str(exc)))
            except Exception as exc:  # an unreadable file must not hide the others' results
                results.append(Prediction(path, error=f"{path}: unexpected {exc!r}"))
            if len(pending) == batch_size:
                self._fill(results, pending)
        self._fill(results, pending)
        return results

    def _fill(self, results: list[Prediction], pending: list[tuple[int, ClipFeatures]]) -> None:
        """Classify the pending clips into their rows of ``results``; empties ``pending``."""
        if not pending:
            return
        probs = self._classify([f for _, f in pending])
        for (i, _), p in zip(pending, probs, strict=True):
            try:
                results[i] = attrs.evolve(results[i], probabilities=_finite(results[i].path, p))
            except MediaError as exc:
                results[i] = attrs.evolve(results[i], error=str(exc))
        pending.clear()


def _finite(path: Path, probabilities: dict[str, float]) -> dict[str, float]:
    """``probabilities``, or a MediaError when they are NaN: a label taken from NaN would be
    the first class, printed as ``nan`` %, with nothing to say it means nothing."""
    if all(math.isfinite(p) for p in probabilities.values()):
        return probabilities
    raise MediaError(path, "the model's output is not a number (NaN) for this file")
