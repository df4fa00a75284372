"""A trained model plus its front-ends: media file in, class probabilities out.

>>> pipe = Pipeline.from_run("runs/mavsa-di-2026...")  # doctest: +SKIP
>>> pipe.predict("clip.mp4")  # doctest: +SKIP
{'sad': 0.02, 'angry': 0.71, ...}
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import torch

from avsent.data.features import FeatureExtractor, uses_audio, uses_video
from avsent.data.loader import Sample, collate
from avsent.errors import AvsentError, ConfigError
from avsent.model import AVModel


@attrs.frozen
class Prediction:
    """One file's outcome: probabilities per class, or the reason it could not be read."""

    path: Path
    probabilities: dict[str, float] | None = None
    error: str | None = None

    @property
    def label(self) -> str | None:
        """The most probable class, or ``None`` for a failed file."""
        if self.probabilities is None:
            return None
        return max(self.probabilities, key=self.probabilities.__getitem__)


class Pipeline:
    """Extracts features in-process (no cache) and runs the model in eval mode."""

    def __init__(self, model: AVModel, config: Any) -> None:
        if model.uses_audio != uses_audio(config) or model.uses_video != uses_video(config):
            raise ConfigError(
                "audio" if model.uses_audio != uses_audio(config) else "video",
                "the config's modalities do not match the model's encoders",
            )
        if config.data.speaker_norm and model.uses_audio:
            raise ConfigError(
                "data.speaker_norm",
                "this model was trained on per-speaker standardised audio, which single files "
                "cannot supply; score it with `avsent evaluate RUN --data ...` on clips with speakers",
            )
        self.model = model.eval()
        self.config = config
        self._extractor: FeatureExtractor | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Pipeline:
        """The pipeline of a finished (or checkpointed) training run."""
        from avsent.training.checkpoint import load_model

        model, config = load_model(run_dir)
        return cls(model, config)

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:  # built on first use: front-ends may load weights
            self._extractor = FeatureExtractor(self.config)
        return self._extractor

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, path: str | Path) -> dict[str, float]:
        """Class → probability for one file; raises MediaError/NoFaceError for bad input."""
        features = self.extractor.extract(path)
        batch = collate([Sample(features, None)]).to(self.device)
        self.model.eval()
        probs = torch.softmax(self.model(batch).logits.float(), dim=-1)[0].cpu()
        return {name: float(p) for name, p in zip(self.model.class_names, probs, strict=True)}

    def predict_many(self, paths: Iterable[str | Path]) -> list[Prediction]:
        """One :class:`Prediction` per file, in order; a failing file does not stop the rest."""
        results = []
        for path in paths:
            try:
                results.append(Prediction(Path(path), self.predict(path)))
            except AvsentError as exc:
                results.append(Prediction(Path(path), error=str(exc)))
            except Exception as exc:  # an unreadable file must not hide the others' results
                results.append(Prediction(Path(path), error=f"{path}: unexpected {exc!r}"))
        return results
