"""Face crops by their content geometry, and ROI tracking that really maps boxes back.

A synthetic frame with a known face box and a coloured border of exactly the margin on each
side shows what the crop holds. A detector that finds a bright square in whatever image it
is shown makes ROI and coarse-to-fine searches real; counting full-frame searches shows
whether ROI boxes were mapped back to the frame (wrong ones are rejected and hidden by a
full-frame search).
"""

from __future__ import annotations

import numpy as np
import pytest

from avsent.faces.pipeline import extract_faces
from avsent.media.video import VideoFrames
from avsent.run_config import FacesConfig

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def clip_of(images: np.ndarray) -> VideoFrames:
    n = len(images)
    return VideoFrames(images, np.arange(n) / 10.0, fps=10.0, duration=n / 10.0)


class FixedDetector:
    """Always reports one box (full-frame coordinates; the configs turn ROI search off)."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        self.box = box

    def detect(self, image: np.ndarray) -> np.ndarray:
        return np.array([self.box], dtype=np.int64)


class BrightSquareDetector:
    """Finds the white square in the image it is shown: full frame, downscaled copy or ROI;
    like a cascade with a ``min_side`` window, not when it is smaller than that there."""

    def __init__(self, min_side: int = 1) -> None:
        self.min_side = min_side
        self.shapes: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> np.ndarray:
        self.shapes.append(image.shape[:2])
        ys, xs = np.nonzero(image[..., 0] > 127)
        if len(xs) == 0 or xs.max() + 1 - xs.min() < self.min_side:
            return np.zeros((0, 4), np.int64)
        box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        return np.array([box], dtype=np.int64)


def square_at(x: int, y: int, side: int, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    image = np.zeros((1, *shape, 3), np.uint8)
    image[0, y : y + side, x : x + side] = 255
    return image


def test_the_crop_holds_the_box_and_the_margin_on_each_side() -> None:
    x, y, side, margin = 100, 60, 80, 0.25
    ring = round(side * margin)  # 20 px of margin left, right, above and below
    image = np.zeros((1, 240, 320, 3), np.uint8)
    image[:] = BLUE  # outside the crop
    image[0, y - ring : y + side + ring, x - ring : x + side + ring] = GREEN  # the margin
    image[0, y : y + side, x : x + side] = RED  # the face box
    config = FacesConfig(
        track_roi=0.0, coarse_width=0, smooth_window=1, margin=margin, crop_size=side + 2 * ring
    )
    track = extract_faces(clip_of(image), FixedDetector((x, y, side, side)), None, config, path="x")
    crop = track.crops[0]
    assert crop.shape == (120, 120, 3)
    assert (crop[ring:-ring, ring:-ring] == RED).all()
    for border in (crop[:ring], crop[-ring:], crop[:, :ring], crop[:, -ring:]):
        assert (border == GREEN).all()


def test_roi_detections_are_mapped_back_without_full_frame_searches() -> None:
    n, side = 6, 80
    images = np.zeros((n, 480, 640, 3), np.uint8)
    truth = []
    for i in range(n):  # the face drifts right and down by a few pixels a frame
        x, y = 280 + 6 * i, 180 + 4 * i
        images[i, y : y + side, x : x + side] = 255
        truth.append((x, y, side, side))
    detector = BrightSquareDetector()
    config = FacesConfig(smooth_window=1, detect_width=320, track_roi=1.6, roi_width=48)
    track = extract_faces(clip_of(images), detector, None, config, path="x")

    assert track.detected.all()
    # the first search only, on the smallest copy (an 80-px face is 6 px there); then ROI
    assert detector.shapes[0] == (36, 48)
    assert len(detector.shapes) == n
    assert all(s[1] <= config.roi_width for s in detector.shapes[1:])
    # ROI scale 48/128: a box comes back within a few full-frame pixels
    assert np.abs(track.boxes[1:] - np.array(truth[1:])).max() <= 4


@pytest.mark.parametrize(
    ("side", "searched", "tolerance"),
    [
        (320, [(36, 48)], 14),  # 24 px on the 48-px copy: found at once (scale 1/13)
        (240, [(36, 48), (72, 96)], 7),  # 18 px there: too small; 36 px on the 96-px copy
        (60, [(36, 48), (72, 96), (240, 320)], 2),  # found only at detect_width (30 px)
    ],
)
def test_a_whole_frame_search_stops_at_the_first_copy_that_finds_the_face(
    side: int, searched: list[tuple[int, int]], tolerance: int
) -> None:
    detector = BrightSquareDetector(min_side=24)  # like the Haar cascade's window
    config = FacesConfig(smooth_window=1, track_roi=0.0, coarse_width=48, detect_width=320)
    track = extract_faces(clip_of(square_at(100, 80, side)), detector, None, config, path="x")
    assert detector.shapes == searched
    assert np.abs(track.boxes[0] - [100, 80, side, side]).max() <= tolerance


@pytest.mark.parametrize("coarse_width", [0, 160, 400])
def test_no_coarse_copy_when_off_or_not_smaller(coarse_width: int) -> None:
    detector = BrightSquareDetector(min_side=24)
    config = FacesConfig(
        smooth_window=1, track_roi=0.0, coarse_width=coarse_width, detect_width=320
    )
    extract_faces(clip_of(square_at(200, 100, 240)), detector, None, config, path="x")
    assert detector.shapes == [(240, 320)]


def test_coarse_width_is_off_or_at_least_32() -> None:
    with pytest.raises(ValueError, match="coarse_width"):
        FacesConfig(coarse_width=16)
