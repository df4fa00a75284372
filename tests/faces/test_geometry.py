"""Landmark geometry: size-free, roll-free, one value per named feature."""

from __future__ import annotations

import numpy as np
import pytest

from avsent.faces.geometry import GEOMETRY_DIM, feature_names, geometric_features


def face_points(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((68, 2)) * 100 + 50


def test_shape_and_names():
    features = geometric_features(face_points(), (50, 50, 100, 100))
    assert features.shape == (GEOMETRY_DIM,) and features.dtype == np.float32
    assert len(feature_names()) == GEOMETRY_DIM


def test_unchanged_by_scale_shift_and_roll_except_the_roll_itself():
    points = face_points()
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T * 3.0 + [200, -40]
    a = geometric_features(points, (50, 50, 100, 100))
    b = geometric_features(moved, (0, 0, 300, 300))
    np.testing.assert_allclose(a[:-1], b[:-1], atol=1e-4)
    assert b[-1] - a[-1] == pytest.approx(angle, abs=1e-4)


def test_distances_are_in_inter_ocular_units():
    points = np.zeros((68, 2))
    points[36:42] = [10, 0]  # right eye centre at x=10
    points[42:48] = [30, 0]  # left eye centre at x=30: inter-ocular distance 20
    points[48] = [0, 50]
    points[54] = [40, 50]  # mouth 40 px wide = 2 inter-ocular distances
    mouth = feature_names().index("mouth width")
    assert geometric_features(points, (0, 0, 80, 80))[mouth] == pytest.approx(2.0)


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="68 landmarks"):
        geometric_features(np.zeros((5, 2)), (0, 0, 10, 10))
