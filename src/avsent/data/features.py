"""Media file → the arrays the model's front-ends produce (the thing the cache stores).

Only the modalities a recipe uses are decoded: an audio-only run never opens the video
stream, so it neither pays for face detection nor fails on a clip without a face.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from avsent.config import NONE, to_dict
from avsent.errors import RegistryError
from avsent.registry import get_registry

#: bump when the stored arrays change meaning for the same config (invalidates every entry)
FEATURE_FORMAT = 1


@attrs.define(eq=False)
class ClipFeatures:
    """One clip's front-end output; a modality the recipe leaves out is ``None``.

    audio float32 [F, T]; video uint8 face crops [T, S, S, C], or with ``faces.embedding``
    float32 vectors [T, 1, 1, D] (one 1×1 map of D channels per frame, so batching, masks
    and the encoder's input layout need nothing new); geometry float32 [T, G];
    face_fraction is the share of sampled frames in which a face was detected.
    """

    audio: np.ndarray | None = None
    video: np.ndarray | None = None
    geometry: np.ndarray | None = None
    face_fraction: float | None = None


def uses_audio(config: Any) -> bool:
    return config.audio.name != NONE


def uses_video(config: Any) -> bool:
    return config.video.name != NONE


def frontend_fingerprint(config: Any) -> str:
    """A stable short hash of the config fields that change the features, and nothing else.

    Model and training settings are left out so that tuning a model reuses the cache; the
    audio front-end only counts when the recipe uses audio, the face settings only when it
    uses video. A front-end whose output depends on files its config only names (a
    pretrained model's weights: an audio front-end, a face embedding) has
    ``identity(config) -> str``, e.g. a hash of them.
    """
    relevant: dict[str, Any] = {"format": FEATURE_FORMAT}
    if uses_audio(config):
        relevant["audio_frontend"] = to_dict(config.audio_frontend)
        identity = _frontend_identity("audio_frontend", config.audio_frontend)
        if identity is not None:
            relevant["audio_frontend_identity"] = identity
    if uses_video(config):
        relevant["faces"] = to_dict(config.faces)
        if config.faces.embedding.name == NONE:  # the key crops had before embeddings existed
            del relevant["faces"]["embedding"]
        identity = _frontend_identity("face_embedding", config.faces.embedding)
        if identity is not None:
            relevant["face_embedding_identity"] = identity
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _frontend_identity(kind: str, choice: Any) -> str | None:
    """The front-end factory's ``identity(config)``, if it has one (``none`` and an unknown
    front-end have none here: building it is where that fails)."""
    if choice.name == NONE:
        return None
    try:
        factory = get_registry().get(kind, choice.name).obj
    except RegistryError:
        return None
    identity = getattr(factory, "identity", None)
    return None if identity is None else identity(choice.config)


class FeatureExtractor:
    """Builds the configured front-ends once and applies them to one file at a time."""

    def __init__(self, config: Any) -> None:
        self.config = config
        registry = get_registry()
        self.frontend = None
        self.detector = None
        self.landmarks = None
        self.embedding = None
        if uses_audio(config):
            choice = config.audio_frontend
            self.frontend = registry.get("audio_frontend", choice.name).build(choice.config)
        if uses_video(config):
            faces = config.faces
            self.detector = registry.get("face_detector", faces.detector.name).build(
                faces.detector.config
            )
            if faces.landmarks.name != NONE:
                self.landmarks = registry.get("landmark_backend", faces.landmarks.name).build(
                    faces.landmarks.config
                )
            if faces.embedding.name != NONE:
                self.embedding = registry.get("face_embedding", faces.embedding.name).build(
                    faces.embedding.config, in_channels=1 if faces.grayscale else 3
                )

    def extract(self, path: str | Path) -> ClipFeatures:
        """Decode ``path`` and run the front-ends; raises MediaError / NoFaceError."""
        path = Path(path)
        features = ClipFeatures()
        if self.frontend is not None:
            from avsent.media.audio import load_audio

            samples = load_audio(path, self.frontend.sample_rate)
            features.audio = np.ascontiguousarray(self.frontend(samples), dtype=np.float32)
        if self.detector is not None:
            from avsent.faces.pipeline import extract_faces
            from avsent.media.video import read_frames

            faces = self.config.faces
            frames = read_frames(path, num_frames=faces.num_frames, fps=faces.sample_fps)
            track = extract_faces(frames, self.detector, self.landmarks, faces, path=path)
            features.video = np.ascontiguousarray(track.crops, dtype=np.uint8)
            if self.embedding is not None:
                vectors = self.embedding(features.video)  # [T, D]
                features.video = np.ascontiguousarray(vectors[:, None, None, :], np.float32)
            if track.geometry is not None:
                features.geometry = np.ascontiguousarray(track.geometry, dtype=np.float32)
            features.face_fraction = float(track.face_fraction)
        return features
