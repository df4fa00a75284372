"""The "haar" face detector plugin on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avsent.contracts import FaceDetector
from avsent.errors import ConfigError
from avsent.plugins.haar import HaarConfig, HaarDetector
from avsent.registry import get_registry
from avsent.run_config import FacesConfig


def load_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_registered_and_satisfies_the_contract():
    detector = get_registry().get("face_detector", "haar").build()
    assert isinstance(detector, FaceDetector)


def test_finds_the_face_in_a_portrait(shared_data):
    image = load_rgb(shared_data / "faces/obama.jpg")
    boxes = HaarDetector(HaarConfig()).detect(image)
    assert boxes.dtype == np.int64 and boxes.shape[1] == 4
    x, _y, w, _h = boxes[0]  # largest first: the face, about a third of the image wide
    assert w > image.shape[1] * 0.2 and x < image.shape[1] / 2 < x + w


def test_largest_first_with_two_people(shared_data):
    boxes = HaarDetector(HaarConfig()).detect(load_rgb(shared_data / "faces/two_people.jpg"))
    assert len(boxes) >= 2
    areas = boxes[:, 2] * boxes[:, 3]
    assert list(areas) == sorted(areas, reverse=True)


def test_no_face_in_dogs_at_the_pipelines_detection_width(shared_data):
    image = load_rgb(shared_data / "faces/dogs.jpg")
    width = FacesConfig().detect_width
    small = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])))
    assert len(HaarDetector(HaarConfig()).detect(small)) == 0


def test_grey_input_finds_the_same_faces_as_colour(shared_data):
    image = load_rgb(shared_data / "faces/obama.jpg")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    detector = HaarDetector(HaarConfig())
    boxes = detector.detect(grey)
    assert len(boxes) >= 1  # a real face, so a broken grey path cannot pass by finding none
    np.testing.assert_array_equal(boxes, detector.detect(image))


def test_unknown_cascade_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot load Haar cascade 'nope.xml'"):
        HaarDetector(HaarConfig(cascade="nope.xml"))


def test_config_validation():
    with pytest.raises(ValueError):
        HaarConfig(scale_factor=1.0)
