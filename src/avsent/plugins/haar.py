"""Face detector plugin "haar": OpenCV's Viola-Jones cascade, the paper's detector.

The cascades ship inside opencv-python (``cv2.data.haarcascades``), so it works offline.
It is cheap on small images, which is why the face pipeline runs it on a downscaled copy.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import cv2
import numpy as np
from attrs import validators as v

from avsent.errors import ConfigError
from avsent.hookspecs import hookimpl


@attrs.define
class HaarConfig:
    """Cascade file (a name in OpenCV's cascade folder, or a path) and its search settings."""

    cascade: str = "haarcascade_frontalface_default.xml"
    scale_factor: float = attrs.field(default=1.1, validator=v.gt(1.0))
    min_neighbors: int = attrs.field(default=5, validator=v.ge(0))
    #: smallest face searched for, as a fraction of the image's shorter side (fewer scales, faster)
    min_size_fraction: float = attrs.field(default=0.1, validator=[v.gt(0.0), v.le(1.0)])
    equalize: bool = True  #: histogram equalisation first (helps dim or low-contrast video)


class HaarDetector:
    """RGB (or grey) uint8 image → boxes [N, 4] (x, y, w, h), largest first."""

    def __init__(self, config: HaarConfig) -> None:
        self.config = config
        path = Path(config.cascade)
        if not path.is_absolute() and not path.exists():
            path = Path(cv2.data.haarcascades) / config.cascade
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise ConfigError(
                "faces.detector.cascade",
                f"cannot load Haar cascade {config.cascade!r} (looked for {path}); "
                f"OpenCV ships these in {cv2.data.haarcascades}",
            )

    def detect(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        if self.config.equalize:
            grey = cv2.equalizeHist(grey)
        side = max(1, round(min(grey.shape[:2]) * self.config.min_size_fraction))
        found = self.classifier.detectMultiScale(
            grey,
            scaleFactor=self.config.scale_factor,
            minNeighbors=self.config.min_neighbors,
            minSize=(side, side),
        )
        boxes = np.asarray(found, dtype=np.int64).reshape(-1, 4)
        return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]


@hookimpl
def register_face_detectors(register):
    register.face_detector(
        "haar",
        HaarDetector,
        config=HaarConfig,
        description="OpenCV Haar cascade (frontal face), run on a downscaled copy",
    )
