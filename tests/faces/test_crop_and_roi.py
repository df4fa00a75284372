"""Face crops by their content geometry, and ROI tracking that really maps boxes back.

A synthetic frame with a known face box and a coloured border of exactly the margin on each
side shows what the crop holds. A detector that finds a bright square in whatever image it
is shown makes ROI and coarse-to-fine searches real; counting full-frame searches shows
whether ROI boxes were mapped back to the frame (wrong ones are rejected and hidden by a
full-frame search).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avsent.faces.pipeline import _crop, _detect_near, _search_copies, extract_faces
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


# -- crops and ROI searches pixel by pixel ----------------------------------------------------

NOISE = np.random.default_rng(0).integers(0, 256, (200, 250, 3), dtype=np.uint8)


def padded_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0 : y0 + side, x0 : x0 + side] with black wherever that lies outside it."""
    big = np.pad(image, ((side, side), (side, side), (0, 0)))
    return big[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]


@pytest.mark.parametrize(
    ("box", "x0", "y0"),
    [
        ((100, 60, 80, 40), 80, 20),  # wide box: the side follows w, the centre x + w/2
        ((-20, 80, 40, 40), -30, 70),  # past the left edge
        ((100, -30, 40, 40), 90, -40),  # past the top
        ((220, 80, 40, 40), 210, 70),  # past the right edge
        ((100, 180, 40, 40), 90, 170),  # past the bottom
    ],
)
def test_a_crop_is_the_margin_square_black_outside_the_frame(box, x0, y0):
    side = round(max(box[2], box[3]) * 1.5)
    config = FacesConfig(margin=0.25, crop_size=side)
    crop = _crop(NOISE, np.array(box, dtype=float), config)
    np.testing.assert_array_equal(crop, padded_square(NOISE, x0, y0, side))


@pytest.mark.parametrize(
    ("crop_size", "interpolation"), [(40, cv2.INTER_AREA), (90, cv2.INTER_LINEAR)]
)
def test_crops_shrink_by_area_and_grow_linearly(crop_size, interpolation):
    config = FacesConfig(margin=0.25, crop_size=crop_size)
    crop = _crop(NOISE, np.array([100.0, 60.0, 40.0, 40.0]), config)  # a 60-px square
    square = NOISE[50:110, 90:150]
    want = cv2.resize(square, (crop_size, crop_size), interpolation=interpolation)
    np.testing.assert_array_equal(crop, want)


class RecordingDetector:
    """Reports ``box`` (in the coordinates of the image it is shown) and keeps the images."""

    def __init__(self, box: tuple[int, int, int, int] = (5, 6, 7, 8)) -> None:
        self.box = box
        self.images: list[np.ndarray] = []

    def detect(self, image: np.ndarray) -> np.ndarray:
        self.images.append(image)
        return np.array([self.box], dtype=np.int64)


def coordinates(height: int = 200, width: int = 250) -> np.ndarray:
    """A frame whose pixels hold their own (x, y): a crop shows where it came from."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(
    ("prev", "track_roi", "corner", "shape"),
    [
        ((100, 80, 40, 20), 1.5, (90, 60), (60, 60)),  # 1.5 × the larger side, centred
        ((0, 0, 20, 40), 2.0, (0, 0), (60, 50)),  # clipped at the top-left corner
        ((245, 100, 10, 10), 1.6, (242, 97), (16, 8)),  # 8 px left at the right edge
        ((100, 195, 10, 10), 1.6, (97, 192), (8, 16)),  # 8 px left at the bottom
    ],
)
def test_the_roi_is_the_square_around_the_last_box_and_boxes_map_back(
    prev, track_roi, corner, shape
):
    detector = RecordingDetector()
    config = FacesConfig(track_roi=track_roi, roi_width=512)  # no downscaling
    boxes = _detect_near(coordinates(), np.array(prev, dtype=float), detector, config)
    (roi,) = detector.images
    assert roi.shape[:2] == shape and tuple(roi[0, 0, :2]) == corner
    assert boxes.tolist() == [[corner[0] + 5, corner[1] + 6, 7, 8]]


@pytest.mark.parametrize("prev", [(246, 100, 10, 10), (100, 196, 10, 10)])
def test_an_roi_under_8_pixels_on_a_side_is_not_searched(prev):
    detector = RecordingDetector()
    config = FacesConfig(track_roi=1.6, roi_width=512)
    boxes = _detect_near(coordinates(), np.array(prev, dtype=float), detector, config)
    assert detector.images == [] and boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("prev", "window", "size"),
    [
        ((100, 80, 40, 40), (88, 68, 152, 132), (32, 32)),
        ((222, 80, 40, 40), (210, 68, 250, 132), (32, 51)),  # clipped: 40 × 64 px
    ],
)
def test_a_large_roi_is_shrunk_by_area_to_roi_width_and_boxes_scale_back(prev, window, size):
    detector = RecordingDetector(box=(4, 4, 8, 8))
    config = FacesConfig(track_roi=1.6, roi_width=32)
    boxes = _detect_near(NOISE, np.array(prev, dtype=float), detector, config)
    x0, y0, x1, y1 = window
    (roi,) = detector.images
    want = cv2.resize(NOISE[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(roi, want)
    scale = size[0] / (x1 - x0)
    np.testing.assert_allclose(boxes, [[x0 + 4 / scale, y0 + 4 / scale, 8 / scale, 8 / scale]])


def test_search_copies_double_while_under_half_detect_width_and_never_upscale():
    config = FacesConfig(coarse_width=32, detect_width=320)
    assert _search_copies(640, 480, config) == [
        (0.05, (32, 24)),
        (0.1, (64, 48)),
        (0.2, (128, 96)),
        (0.5, (320, 240)),
    ]
    assert _search_copies(200, 150, config)[-1] == (1.0, (200, 150))


def test_a_whole_frame_search_shrinks_by_area():
    detector = RecordingDetector()
    # 0.4×: not a whole factor, where linear and area sampling differ
    config = FacesConfig(coarse_width=0, detect_width=100, track_roi=0.0, smooth_window=1)
    extract_faces(clip_of(NOISE[None]), detector, None, config, path="x")
    want = cv2.resize(NOISE, (100, 80), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(detector.images[0], want)


def test_an_roi_exactly_one_face_wide_still_tracks():
    n, side = 4, 80
    images = np.zeros((n, 480, 640, 3), np.uint8)
    for i in range(n):
        images[i, 180 : 180 + side, 280 + 2 * i : 280 + 2 * i + side] = 255
    detector = BrightSquareDetector()
    config = FacesConfig(smooth_window=1, detect_width=320, track_roi=1.0, roi_width=48)
    track = extract_faces(clip_of(images), detector, None, config, path="x")
    assert track.detected.all()
    # after the first search (a 48×36 copy), 80-px squares shown at 48 px: ROI searches
    assert detector.shapes[1:] == [(48, 48)] * (n - 1)
