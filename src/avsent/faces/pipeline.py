"""Sampled frames → one face track: a stable square crop of the main face in every frame.

Speed comes from never running the detector on a full-resolution frame: a search of the
whole frame (the first one, and any after the face is lost) runs from small copies to
larger ones — ``coarse_width`` wide, then twice as wide while under half ``detect_width``,
then ``detect_width`` — and stops at the first that finds a face. A cascade pays for the
windows that look like a face, so a big face found on a 48-px copy costs a tenth of the
search at 320 px, and a copy too small for the face costs almost nothing. After that, the
detector looks only in a small square around the face's last box, scaled to
``roi_width``. The main face is the largest one when the search starts and, after that, the
detection nearest the previous box, so the crop does not jump between people. Frames
where the face is not found take a box interpolated from their neighbours, and the boxes
are averaged over ``smooth_window`` frames so the crops do not jitter.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import cv2
import numpy as np

from avsent.contracts import FaceDetector, LandmarkBackend
from avsent.errors import NoFaceError
from avsent.faces.geometry import GEOMETRY_DIM, geometric_features
from avsent.media.video import VideoFrames
from avsent.run_config import FacesConfig


@attrs.frozen(eq=False)
class FaceTrack:
    """The main face of a clip, frame by frame.

    ``crops`` [T, S, S, C] uint8 (C = 3 RGB or 1 grey); ``boxes`` [T, 4] int (x, y, w, h) of
    the face in full-frame pixels after gap filling and smoothing (the crop adds the margin);
    ``detected`` [T] whether the detector found the face in that frame; ``geometry``
    [T, GEOMETRY_DIM] landmark features or None; ``face_fraction`` the mean of ``detected``.
    """

    crops: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray
    geometry: np.ndarray | None
    face_fraction: float


def extract_faces(
    frames: VideoFrames,
    detector: FaceDetector,
    landmarks: LandmarkBackend | None,
    config: FacesConfig,
    *,
    path: str | Path,
) -> FaceTrack:
    """Find, track and crop the main face in each frame.

    :raises NoFaceError: no face in any frame, unless ``config.no_face == "center"`` (then a
        centre square crop with ``face_fraction`` 0, and zero geometry).
    """
    images = frames.frames
    found = _find_main_face(images, detector, config)
    detected = np.array([box is not None for box in found], dtype=bool)
    if detected.any():
        boxes = _smooth(_fill_gaps(found), config.smooth_window)
    elif config.no_face == "center":
        boxes = np.tile(
            _centre_box(images.shape[2], images.shape[1], config.margin), (len(images), 1)
        )
    else:
        raise NoFaceError(path, f"no face found in any of the {len(images)} sampled frames")
    crops = np.stack([_crop(image, box, config) for image, box in zip(images, boxes, strict=True)])
    int_boxes = np.rint(boxes).astype(np.int64)
    geometry = None
    if landmarks is not None and not detected.any():  # centre crop: no face to measure
        geometry = np.zeros((len(images), GEOMETRY_DIM), dtype=np.float32)
    elif landmarks is not None:
        geometry = np.stack(
            [
                geometric_features(landmarks.landmarks(image, box[None])[0], box)
                for image, box in zip(images, int_boxes, strict=True)
            ]
        )
    return FaceTrack(
        crops=crops,
        boxes=int_boxes,
        detected=detected,
        geometry=geometry,
        face_fraction=float(detected.mean()),
    )


def _find_main_face(
    images: np.ndarray, detector: FaceDetector, config: FacesConfig
) -> list[np.ndarray | None]:
    """The main face's box (x, y, w, h floats) per frame, or None where it was not found."""
    height, width = images.shape[1:3]
    copies = _search_copies(width, height, config)
    found: list[np.ndarray | None] = []
    prev: np.ndarray | None = None
    misses = 0
    for image in images:
        box = None
        if prev is not None and config.track_roi > 0:
            box = _pick(_detect_near(image, prev, detector, config), prev, config)
        if box is None:
            box = _search(image, copies, detector, prev, config)
        if box is not None:
            prev, misses = box, 0
        else:
            misses += 1
            if misses >= config.lost_after:
                prev = None  # lost: the next search takes the largest face again
        found.append(box)
    return found


def _search_copies(
    width: int, height: int, config: FacesConfig
) -> list[tuple[float, tuple[int, int]]]:
    """(scale, (width, height)) of the copies a whole-frame search looks at, smallest first."""
    widths = []
    coarse = config.coarse_width
    while 0 < coarse < min(width, config.detect_width / 2):
        widths.append(coarse)
        coarse *= 2
    widths.append(config.detect_width)
    copies = []
    for copy_width in widths:
        scale = min(1.0, copy_width / width)
        copies.append((scale, (max(1, round(width * scale)), max(1, round(height * scale)))))
    return copies


def _search(
    image: np.ndarray,
    copies: list[tuple[float, tuple[int, int]]],
    detector: FaceDetector,
    prev: np.ndarray | None,
    config: FacesConfig,
) -> np.ndarray | None:
    """The main face in the whole frame, from the first copy where one is found."""
    for scale, size in copies:
        small = image if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        box = _pick(detector.detect(small) / scale, prev, config)
        if box is not None:
            return box
    return None


def _detect_near(
    image: np.ndarray, prev: np.ndarray, detector: FaceDetector, config: FacesConfig
) -> np.ndarray:
    """Detect in a square around the previous box, scaled down to ``roi_width``."""
    height, width = image.shape[:2]
    side = config.track_roi * max(prev[2], prev[3])
    cx, cy = prev[0] + prev[2] / 2, prev[1] + prev[3] / 2
    x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    x1, y1 = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return np.zeros((0, 4))
    roi = image[y0:y1, x0:x1]
    scale = min(1.0, config.roi_width / roi.shape[1])
    if scale < 1.0:
        roi_size = (max(1, round(roi.shape[1] * scale)), max(1, round(roi.shape[0] * scale)))
        roi = cv2.resize(roi, roi_size, interpolation=cv2.INTER_AREA)
    boxes = detector.detect(np.ascontiguousarray(roi)) / scale
    return boxes + np.array([x0, y0, 0, 0])


def _pick(boxes: np.ndarray, prev: np.ndarray | None, config: FacesConfig) -> np.ndarray | None:
    """The largest box when nothing is tracked, else the one nearest ``prev`` (if near enough)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    if prev is None:
        return boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    shift = np.hypot(*(centres - (prev[:2] + prev[2:] / 2)).T) / max(prev[2], prev[3])
    best = int(np.argmin(shift))
    return boxes[best] if shift[best] <= config.max_shift else None


def _fill_gaps(found: list[np.ndarray | None]) -> np.ndarray:
    """Boxes for every frame: linear between detected neighbours, nearest at the ends."""
    have = np.array([i for i, box in enumerate(found) if box is not None])
    known = np.stack([found[i] for i in have])
    steps = np.arange(len(found))
    return np.stack([np.interp(steps, have, known[:, k]) for k in range(4)], axis=1)


def _smooth(boxes: np.ndarray, window: int) -> np.ndarray:
    """Moving average of centre and size over ``window`` frames (edges repeat the end boxes)."""
    if window <= 1 or len(boxes) < 2:
        return boxes
    half = window // 2
    centre_size = np.concatenate([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], axis=1)
    padded = np.pad(centre_size, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    smooth = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)
    return np.concatenate([smooth[:, :2] - smooth[:, 2:] / 2, smooth[:, 2:]], axis=1)


def _centre_box(width: int, height: int, margin: float) -> np.ndarray:
    """A box whose crop (with the margin) is the centre square of the frame."""
    side = min(width, height) / (1 + 2 * margin)
    return np.array([(width - side) / 2, (height - side) / 2, side, side])


def _crop(image: np.ndarray, box: np.ndarray, config: FacesConfig) -> np.ndarray:
    """Square crop around the box plus ``margin`` on each side, black outside the frame."""
    side = max(1, round(max(box[2], box[3]) * (1 + 2 * config.margin)))
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    height, width = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        x0, y0 = x0 + pad, y0 + pad
    square = image[y0 : y0 + side, x0 : x0 + side]
    shrink = side > config.crop_size
    crop = cv2.resize(
        square,
        (config.crop_size, config.crop_size),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
    )
    if config.grayscale:
        return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None]
    return crop
