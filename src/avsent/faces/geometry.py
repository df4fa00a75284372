"""Geometric face features from 68 landmarks (the paper's distances and angles).

Points follow the usual 68-point (iBUG 300-W) layout: jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, lips 48-67. Every distance is divided by the inter-ocular distance (between the
two eye centres), so the features do not depend on how large the face is in the frame or
on the crop; if the eyes collapse onto one point (a failed fit) the box width is used
instead. Angles are in radians and measured against the eye line, so head roll does not
leak into them; the roll itself is the last feature.
"""

from __future__ import annotations

import numpy as np

#: (a, b) landmark index pairs whose distance is a feature: what each measures
DISTANCES: tuple[tuple[int, int, str], ...] = (
    (37, 41, "right eye opening (outer)"),
    (38, 40, "right eye opening (inner)"),
    (43, 47, "left eye opening (inner)"),
    (44, 46, "left eye opening (outer)"),
    (36, 39, "right eye width"),
    (42, 45, "left eye width"),
    (19, 37, "right brow raise"),
    (24, 44, "left brow raise"),
    (21, 39, "right inner brow to eye"),
    (22, 42, "left inner brow to eye"),
    (21, 22, "brow gap (frown)"),
    (48, 54, "mouth width"),
    (51, 57, "mouth opening (outer lips)"),
    (62, 66, "mouth opening (inner lips)"),
    (33, 51, "nose to upper lip"),
    (33, 48, "nose to right mouth corner"),
    (33, 54, "nose to left mouth corner"),
    (36, 48, "right eye corner to mouth corner"),
    (45, 54, "left eye corner to mouth corner"),
    (31, 35, "nose width"),
    (30, 8, "nose tip to chin (jaw drop)"),
    (2, 14, "jaw width"),
)

#: (a, vertex, b) triples whose angle at the vertex is a feature
ANGLES: tuple[tuple[int, int, int, str], ...] = (
    (50, 48, 58, "right mouth corner opening"),
    (52, 54, 56, "left mouth corner opening"),
    (48, 33, 54, "mouth corners seen from the nose tip"),
    (4, 8, 12, "chin angle"),
)

#: (a, b) segments whose slope against the eye line is a feature
SLOPES: tuple[tuple[int, int, str], ...] = (
    (17, 21, "right brow slope"),
    (22, 26, "left brow slope"),
    (48, 54, "mouth corner line tilt"),
)

GEOMETRY_DIM: int = len(DISTANCES) + len(ANGLES) + len(SLOPES) + 1  # + head roll

_RIGHT_EYE = slice(36, 42)
_LEFT_EYE = slice(42, 48)


def geometric_features(points: np.ndarray, box: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """Landmarks [68, 2] (x, y pixels) and the face box (x, y, w, h) → float32 [GEOMETRY_DIM]."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks as [68, 2], got {points.shape}")
    eye_r = points[_RIGHT_EYE].mean(0)
    eye_l = points[_LEFT_EYE].mean(0)
    eye_axis = eye_l - eye_r
    scale = float(np.hypot(*eye_axis))
    if scale < 1e-3 * max(float(box[2]), 1.0):
        scale = max(float(box[2]), 1.0)
    roll = float(np.arctan2(eye_axis[1], eye_axis[0]))

    dists = [np.hypot(*(points[a] - points[b])) / scale for a, b, _ in DISTANCES]
    angles = [_angle(points[a] - points[o], points[b] - points[o]) for a, o, b, _ in ANGLES]
    slopes = [_wrap(np.arctan2(*(points[b] - points[a])[::-1]) - roll) for a, b, _ in SLOPES]
    return np.asarray([*dists, *angles, *slopes, roll], dtype=np.float32)


def feature_names() -> list[str]:
    """One name per feature, in order (for reports and plots)."""
    return [
        *(name for *_, name in DISTANCES),
        *(name for *_, name in ANGLES),
        *(name for *_, name in SLOPES),
        "head roll",
    ]


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    denom = float(np.hypot(*u) * np.hypot(*v))
    if denom < 1e-9:
        return 0.0
    return float(np.arccos(np.clip(np.dot(u, v) / denom, -1.0, 1.0)))


def _wrap(angle: float) -> float:
    """Into (-π, π]."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)
