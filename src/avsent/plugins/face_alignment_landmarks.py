"""Landmark backend "face-alignment": 68 2-D points per face box, from the FAN network.

face-alignment (Bulat & Tzimiropoulos) fits the points inside boxes we give it, so it runs
on the Haar boxes and its own face detector is never loaded. Its FAN weights are not part
of the package: face-alignment downloads them into the torch hub cache on first use. This
backend looks for that file first and, when it is missing, fails at once with the file
name, the folder and the URL, instead of a network error deep inside face-alignment.
"""

from __future__ import annotations

import inspect
import os
import pickle
from pathlib import Path

import attrs
import numpy as np

from avsent.errors import WeightsUnavailableError
from avsent.hookspecs import hookimpl

#: face-alignment's name for the 2-D network it loads (see ``face_alignment.api.models_urls``)
NETWORK = "2DFAN-4"


@attrs.define
class FaceAlignmentConfig:
    device: str = "cpu"
    #: also run on the mirrored face and average (better points, twice the time)
    flip_input: bool = False


def weights_path() -> tuple[Path, str]:
    """Where face-alignment looks for its FAN weights (torch hub cache), and their URL."""
    import torch.hub
    from face_alignment.api import models_urls

    url = models_urls[NETWORK]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


class FaceAlignmentLandmarks:
    """RGB image + boxes (x, y, w, h) → float32 [N, 68, 2] (x, y) in image pixels."""

    def __init__(self, config: FaceAlignmentConfig) -> None:
        import face_alignment

        path, url = weights_path()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"face-alignment needs its FAN weights file {path.name} in {path.parent} "
                f"(the torch hub cache; TORCH_HOME moves it). This machine cannot download "
                f"it: fetch {url} elsewhere and place it there, or run without landmarks "
                f'(faces.landmarks = "none").'
            )
        kwargs = {
            "device": config.device,
            "flip_input": config.flip_input,
            "face_detector": "folder",  # boxes come from us; loads no detector weights
        }
        if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
            kwargs["compile"] = False  # a one-off compile costs more than a preprocessing run
        try:
            self.model = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **kwargs)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise WeightsUnavailableError(
                f"the FAN weights file {path} could not be loaded ({exc}); delete it and "
                f"place a good copy of {url} there"
            ) from None

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 68, 2), dtype=np.float32)
        corners = [np.array([x, y, x + w, y + h]) for x, y, w, h in boxes]
        points = self.model.get_landmarks_from_image(image, detected_faces=corners)
        return np.stack(points).astype(np.float32)[:, :, :2]


@hookimpl
def register_landmark_backends(register):
    register.landmark_backend(
        "face-alignment",
        FaceAlignmentLandmarks,
        config=FaceAlignmentConfig,
        description="68 2-D landmarks (FAN) inside the detector's boxes; weights from torch hub cache",
    )
