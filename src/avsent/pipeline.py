"""A trained model plus its front-ends: media file in, class probabilities out.

>>> pipe = Pipeline.from_run("runs/mavsa-di-2026...")  # doctest: +SKIP
>>> pipe.predict("clip.mp4")  # doctest: +SKIP
{'sad': 0.02, 'angry': 0.71, ...}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from avsent.config import NONE, Choice
from avsent.data.features import ClipFeatures, FeatureExtractor, uses_audio, uses_video
from avsent.data.loader import Sample, collate
from avsent.data.normalise import audio_modes, normalise_item, standardise_utterance_chunks
from avsent.data.streaming import feature_chunks, streamable
from avsent.data.windows import crop_frames, stream_windows, streamed_logits, windowed_logits
from avsent.errors import AvsentError, ConfigError, MediaError
from avsent.media.audio import stream_audio
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
    would from the cache. A file whose audio runs longer than a window is decoded,
    featurised and scored a chunk at a time (:mod:`avsent.data.streaming`), so its length
    does not raise memory — unless the front-end cannot stream (then it is read whole).
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
        """The features of ``path`` (the whole file) and the modalities found; raises the
        first problem (MediaError, NoFaceError) when no modality the model uses can be read."""
        parts, problems = _extract_parts(path, self.extractors)
        if not parts:
            raise problems[0]
        return _merge(parts), self._found(parts)

    def _read(self, path: Path, per_pass: int) -> tuple[ClipFeatures | dict[str, float], str]:
        """What :meth:`extract` gives, ready for a batch — or, for a file whose audio runs
        longer than a chunk, its probabilities: its windows streamed through the model
        ``per_pass`` at a time, so memory holds a chunk and not the file."""
        chunks = self._audio_chunks(path)
        if chunks is None:
            return self.extract(path)
        others = {name: e for name, e in self.extractors.items() if name != "audio"}
        parts, problems = _extract_parts(path, others)
        try:
            head = list(islice(chunks, 2))
            if len(head) == 1:
                parts["audio"] = ClipFeatures(audio=head[0])
            else:
                features = chain(head, chunks)
                if self.config.data.utterance_norm:  # over the whole file: read it twice
                    features = standardise_utterance_chunks(features, self._audio_chunks(path))
                windows = stream_windows(features, self.window)
                self.model.eval()
                logits = streamed_logits(self.model, windows, _merge(parts), per_pass, self.device)
                return _probabilities(self.model, logits[None])[0], self._found(
                    {"audio": None, **parts}
                )
        except MediaError as exc:  # the audio failed, perhaps at its end: score the rest
            problems.insert(0, exc)
        if not parts:
            raise problems[0]
        return _merge(parts), self._found(parts)

    def _audio_chunks(self, path: Path) -> Iterator[np.ndarray] | None:
        """The audio features of ``path`` by chunks of a window, or None when they cannot
        stream: no audio, no windows (``max_audio_frames = 0``), or a front-end some of
        whose frames depend on the whole clip."""
        extractor = self.extractors.get("audio")
        if extractor is None or self.window is None or not streamable(extractor.frontend):
            return None
        frontend = extractor.frontend
        return feature_chunks(frontend, stream_audio(path, frontend.sample_rate), self.window)

    def _found(self, parts: dict[str, Any]) -> str:
        return "+".join(name for name in self.extractors if name in parts)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, path: str | Path) -> dict[str, float]:
        """Class → probability for one file; raises MediaError/NoFaceError for bad input."""
        path = Path(path)
        read, _ = self._read(path, per_pass=1)  # windowed_logits on a batch of one clip: 1
        return _finite(path, read if isinstance(read, dict) else self._classify([read])[0])

    @torch.no_grad()
    def _classify(self, features: Sequence[ClipFeatures]) -> list[dict[str, float]]:
        """One forward pass over a batch of clips (padded with masks, as in evaluation; a
        long clip scored by windows)."""
        utterance = self.config.data.utterance_norm  # per-speaker is refused in __init__
        samples = [Sample(normalise_item(f, utterance=utterance), None) for f in features]
        batch = collate(samples).to(self.device)
        self.model.eval()
        return _probabilities(self.model, windowed_logits(self.model, batch, self.window))

    def predict_many(self, paths: Iterable[str | Path], batch_size: int = 8) -> list[Prediction]:
        """One :class:`Prediction` per file, in order, ``batch_size`` files (or a long
        file's windows) per forward pass; a failing file gets its error and does not stop
        the rest."""
        if batch_size < 1:
            raise ConfigError("--batch-size", f"must be at least 1, got {batch_size}")
        results: list[Prediction] = []
        pending: list[tuple[int, ClipFeatures]] = []
        for path in map(Path, paths):
            try:
                read, found = self._read(path, batch_size)
                if isinstance(read, dict):
                    results.append(Prediction(path, _finite(path, read), modalities=found))
                else:
                    pending.append((len(results), read))
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


def _extract_parts(
    path: str | Path, extractors: dict[str, FeatureExtractor]
) -> tuple[dict[str, ClipFeatures], list[AvsentError]]:
    """Each modality's features, and the problems of those that could not be read."""
    parts: dict[str, ClipFeatures] = {}
    problems: list[AvsentError] = []
    for name, extractor in extractors.items():
        try:
            parts[name] = extractor.extract(path)
        except MediaError as exc:
            problems.append(exc)
    return parts, problems


def _merge(parts: dict[str, ClipFeatures]) -> ClipFeatures:
    """One clip's features from its modalities' (a missing modality is None)."""
    audio, video = parts.get("audio"), parts.get("video")
    return ClipFeatures(
        audio=audio.audio if audio else None,
        video=video.video if video else None,
        geometry=video.geometry if video else None,
        face_fraction=video.face_fraction if video else None,
    )


def _probabilities(model: AVModel, logits: torch.Tensor) -> list[dict[str, float]]:
    """Class → probability for each row of ``logits`` [B, K]."""
    probs = torch.softmax(logits.float(), dim=-1).cpu()
    names = model.class_names
    return [{n: float(p) for n, p in zip(names, row, strict=True)} for row in probs]


def _finite(path: Path, probabilities: dict[str, float]) -> dict[str, float]:
    """``probabilities``, or a MediaError when they are NaN: a label taken from NaN would be
    the first class, printed as ``nan`` %, with nothing to say it means nothing."""
    if all(math.isfinite(p) for p in probabilities.values()):
        return probabilities
    raise MediaError(path, "the model's output is not a number (NaN) for this file")
