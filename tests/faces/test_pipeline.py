"""Face tracks: real clips, the main-face choice, gaps, smoothing, crops and no-face policies."""

from __future__ import annotations

import numpy as np
import pytest

from avsent.errors import NoFaceError
from avsent.faces.geometry import GEOMETRY_DIM
from avsent.faces.pipeline import FaceTrack, _centre_box, _pick, _smooth, extract_faces
from avsent.media.video import VideoFrames, read_frames
from avsent.plugins.haar import HaarConfig, HaarDetector
from avsent.run_config import FacesConfig


def clip_of(images: np.ndarray) -> VideoFrames:
    n = len(images)
    return VideoFrames(images, np.arange(n) / 10.0, fps=10.0, duration=n / 10.0)


class ScriptedDetector:
    """Returns given boxes per call (in the coordinates of the image it is shown)."""

    def __init__(self, faces_per_frame: list[list[tuple[int, int, int, int]]], width: int):
        self.faces = faces_per_frame
        self.width = width
        self.frame = -1
        self.calls: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> np.ndarray:
        # Full-frame search shows a downscaled whole frame; an ROI search a part of one.
        # Only full-frame searches are scripted (the config turns ROI tracking off).
        self.frame += 1
        self.calls.append(image.shape[:2])
        scale = image.shape[1] / self.width
        boxes = np.array(self.faces[self.frame], dtype=float).reshape(-1, 4)
        return np.rint(boxes * scale).astype(np.int64)


def full_frame(**kwargs) -> FacesConfig:
    """One whole-frame search per frame, at ``detect_width`` (the scripts go call by call)."""
    return FacesConfig(track_roi=0.0, coarse_width=0, smooth_window=1, **kwargs)


def blank(n: int, h: int = 240, w: int = 320) -> np.ndarray:
    return np.zeros((n, h, w, 3), np.uint8)


def test_largest_face_is_chosen_and_then_followed():
    big, small = (100, 60, 80, 80), (10, 10, 40, 40)
    moved_big = (110, 64, 80, 80)
    # In frame 2 a bigger face appears elsewhere: the track must stay with the first one.
    script = [[small, big], [big, small], [(200, 100, 110, 110), moved_big]]
    track = extract_faces(
        clip_of(blank(3)), ScriptedDetector(script, 320), None, full_frame(), path="x.mp4"
    )
    assert track.boxes.tolist() == [list(big), list(big), list(moved_big)]
    assert track.detected.all() and track.face_fraction == 1.0


def test_missing_frames_are_filled_from_neighbours():
    a, b = (100, 100, 60, 60), (140, 100, 60, 60)
    script = [[], [a], [], [], [b], []]
    track = extract_faces(
        clip_of(blank(6)), ScriptedDetector(script, 320), None, full_frame(), path="x.mp4"
    )
    assert track.detected.tolist() == [False, True, False, False, True, False]
    assert track.face_fraction == pytest.approx(2 / 6)
    xs = track.boxes[:, 0].tolist()
    assert xs[0] == 100 and xs[1] == 100 and xs[4] == 140 and xs[5] == 140  # nearest at ends
    assert 100 < xs[2] < xs[3] < 140  # linear in between


def test_detection_runs_on_a_downscaled_copy_and_maps_back():
    face = (400, 200, 240, 240)
    detector = ScriptedDetector([[face]] * 2, 1280)
    track = extract_faces(
        clip_of(blank(2, 720, 1280)), detector, None, full_frame(detect_width=320), path="x.mp4"
    )
    assert detector.calls == [(180, 320), (180, 320)]
    assert np.abs(track.boxes[0] - face).max() <= 4


def test_smoothing_removes_jitter():
    rng = np.random.default_rng(0)
    script = [[(100 + int(rng.integers(-6, 7)), 80, 80, 80)] for _ in range(12)]
    raw = extract_faces(
        clip_of(blank(12)), ScriptedDetector(script, 320), None, full_frame(), path="x"
    )
    config = FacesConfig(track_roi=0.0, smooth_window=5)
    smooth = extract_faces(
        clip_of(blank(12)), ScriptedDetector(script, 320), None, config, path="x"
    )
    assert np.abs(np.diff(smooth.boxes[:, 0])).max() < np.abs(np.diff(raw.boxes[:, 0])).max()


def test_crops_are_square_with_margin_and_black_outside_the_frame():
    images = blank(1, 100, 100)
    images[:] = 200
    config = full_frame(crop_size=32, margin=0.5)
    track = extract_faces(
        clip_of(images), ScriptedDetector([[(0, 0, 40, 40)]], 100), None, config, path="x"
    )
    crop = track.crops[0]
    assert crop.shape == (32, 32, 3)
    # the 80-px square centred on (20, 20) reaches 20 px past the top-left corner
    assert crop[:4, :4].max() == 0 and crop[-4:, -4:].min() == 200


def test_grayscale_crops_have_one_channel():
    config = full_frame(grayscale=True, crop_size=16)
    track = extract_faces(
        clip_of(blank(2)), ScriptedDetector([[(50, 50, 60, 60)]] * 2, 320), None, config, path="x"
    )
    assert track.crops.shape == (2, 16, 16, 1) and track.crops.dtype == np.uint8


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_no_face_raises_naming_the_file(policy):
    detector = ScriptedDetector([[]] * 3, 320)
    with pytest.raises(NoFaceError, match=r"clip\.mp4: no face found in any of the 3"):
        extract_faces(
            clip_of(blank(3)), detector, None, full_frame(no_face=policy), path="clip.mp4"
        )


def test_no_face_centre_policy_crops_the_middle():
    images = blank(2)
    images[:, :, 40:280] = 255  # the centre 240×240 square is white, the sides black
    detector = ScriptedDetector([[]] * 2, 320)
    config = full_frame(no_face="center", crop_size=24)
    track = extract_faces(clip_of(images), detector, None, config, path="x")
    assert track.face_fraction == 0.0 and not track.detected.any()
    assert track.crops.shape == (2, 24, 24, 3) and track.crops.min() == 255


class FixedLandmarks:
    def landmarks(self, image, boxes):
        rng = np.random.default_rng(1)
        x, y, w, h = boxes[0]
        return (rng.random((1, 68, 2)) * [w, h] + [x, y]).astype(np.float32)


def test_landmarks_give_geometry_per_frame():
    track = extract_faces(
        clip_of(blank(3)),
        ScriptedDetector([[(50, 50, 80, 80)]] * 3, 320),
        FixedLandmarks(),
        full_frame(),
        path="x",
    )
    assert track.geometry.shape == (3, GEOMETRY_DIM) and track.geometry.dtype == np.float32


def real_clips(shared_data):
    clips = sorted((shared_data / "av").glob("*/*")) + sorted(
        (shared_data / "face-video/mead").glob("*.mp4")
    )
    assert clips, "no real clips found"
    return clips


def test_haar_finds_the_face_in_every_real_clip_and_crops_are_stable(shared_data):
    detector = HaarDetector(HaarConfig())
    config = FacesConfig()
    for path in real_clips(shared_data):
        track = extract_faces(read_frames(path, num_frames=8), detector, None, config, path=path)
        assert isinstance(track, FaceTrack)
        assert track.face_fraction >= 0.75, path
        assert track.crops.shape == (8, config.crop_size, config.crop_size, 3), path
        size = track.boxes[:, 2].mean()
        centres = track.boxes[:, :2] + track.boxes[:, 2:] / 2
        # a speaker sitting still: the crop moves and grows by a few % of the face at most
        assert np.abs(np.diff(centres, axis=0)).max() < 0.08 * size, path
        assert track.boxes[:, 2].std() < 0.05 * size, path


def test_no_face_in_a_photo_of_dogs(shared_data):
    import cv2

    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces/dogs.jpg")), cv2.COLOR_BGR2RGB)
    with pytest.raises(NoFaceError, match=r"dogs\.jpg"):
        extract_faces(
            clip_of(image[None]), HaarDetector(HaarConfig()), None, FacesConfig(), path="dogs.jpg"
        )


def test_centre_crop_has_zero_geometry():
    config = full_frame(no_face="center")
    track = extract_faces(
        clip_of(blank(2)), ScriptedDetector([[]] * 2, 320), FixedLandmarks(), config, path="x"
    )
    assert track.geometry.shape == (2, GEOMETRY_DIM) and not track.geometry.any()


# -- the helpers' exact arithmetic ------------------------------------------------------------


def grow_about(cx: float, cy: float, sizes: list[tuple[float, float]]) -> np.ndarray:
    """Boxes (x, y, w, h) of the given sizes, all centred on (cx, cy)."""
    return np.array([(cx - w / 2, cy - h / 2, w, h) for w, h in sizes], dtype=float)


@pytest.mark.parametrize(
    ("window", "sizes", "want"),
    [
        # a 3-frame mean, the ends repeated: sizes average, the fixed centre stays
        (3, [(10, 20), (20, 40), (30, 60)], [(40 / 3, 80 / 3), (20, 40), (80 / 3, 160 / 3)]),
        (2, [(10, 20), (20, 40), (30, 60)], [(40 / 3, 80 / 3), (20, 40), (80 / 3, 160 / 3)]),
        (3, [(10, 20), (40, 80)], [(20, 40), (30, 60)]),  # two frames are smoothed too
        (5, [(10, 20), (20, 40), (30, 60)], [(16, 32), (20, 40), (24, 48)]),
        (1, [(10, 20), (30, 60)], [(10, 20), (30, 60)]),
    ],
)
def test_smoothing_averages_centre_and_size(window, sizes, want):
    smooth = _smooth(grow_about(50.0, 40.0, sizes), window)
    np.testing.assert_allclose(smooth, grow_about(50.0, 40.0, want))


def test_smoothing_a_moving_box_moves_its_centre_by_the_mean():
    boxes = np.array([(0, 0, 10, 20), (30, 6, 10, 20), (60, 12, 10, 20)], dtype=float)
    smooth = _smooth(boxes, 3)
    np.testing.assert_allclose(smooth[1], boxes[1])
    np.testing.assert_allclose(
        smooth[0], [10, 2, 10, 20]
    )  # centre: mean of (5, 10), (5, 10), (35, 16)


def test_the_largest_face_by_area_then_the_nearest_within_max_shift():
    config = FacesConfig(max_shift=0.5)
    tall, wide = (0.0, 0.0, 10.0, 40.0), (50.0, 50.0, 30.0, 30.0)
    assert _pick(np.array([tall, wide]), None, config).tolist() == list(wide)  # 900 > 400
    prev = np.array([100.0, 100.0, 40.0, 20.0])  # centre (120, 110), size 40: 20 px reach
    at_reach = np.array([115.0, 115.0, 10.0, 30.0])  # centre (120, 130): 0.5 face sizes
    assert _pick(at_reach, prev, config).tolist() == at_reach.tolist()
    beyond = at_reach + np.array([0, 1, 0, 0])  # centre 21 px away
    assert _pick(beyond, prev, config) is None
    assert _pick(np.zeros((0, 4)), prev, config) is None


def test_the_centre_box_with_its_margin_is_the_centre_square():
    np.testing.assert_allclose(_centre_box(320, 240, 0.25), [80, 40, 160, 160])
    np.testing.assert_allclose(_centre_box(240, 320, 0.0), [0, 40, 240, 240])


def test_a_face_is_lost_only_after_lost_after_misses_in_a_row():
    face, other = (100, 60, 60, 60), (10, 10, 90, 90)  # the other is larger and far away
    script = [[face], [], [other, face], [], [], [other, face]]
    found = extract_faces(
        clip_of(blank(6)),
        ScriptedDetector(script, 320),
        None,
        full_frame(lost_after=2),
        path="x",
    )
    # one miss keeps following the face; two in a row re-choose the largest
    assert found.boxes.tolist()[2] == list(face) and found.boxes.tolist()[5] == list(other)


class RecordingLandmarks(FixedLandmarks):
    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def landmarks(self, image, boxes):
        self.images.append(image)
        return super().landmarks(image, boxes)


def test_track_fields_have_their_types_and_landmarks_see_each_frame():
    images = np.random.default_rng(0).integers(0, 255, (3, 240, 320, 3), dtype=np.uint8)
    backend = RecordingLandmarks()
    script = [[(50, 50, 80, 80)]] * 3
    track = extract_faces(
        clip_of(images), ScriptedDetector(script, 320), backend, full_frame(), path="x"
    )
    assert track.boxes.dtype == np.int64 and track.boxes.shape == (3, 4)
    assert len(backend.images) == 3
    assert all(np.array_equal(a, b) for a, b in zip(backend.images, images, strict=True))
    plain = extract_faces(
        clip_of(images), ScriptedDetector(script, 320), None, full_frame(), path="x"
    )
    assert plain.geometry is None


def test_a_centre_crop_track_has_4_column_int_boxes_and_float32_or_no_geometry():
    config = full_frame(no_face="center")
    none = extract_faces(clip_of(blank(2)), ScriptedDetector([[]] * 2, 320), None, config, path="x")
    assert none.geometry is None
    assert none.boxes.tolist() == [[80, 40, 160, 160]] * 2 and none.boxes.dtype == np.int64
    zero = extract_faces(
        clip_of(blank(2)), ScriptedDetector([[]] * 2, 320), FixedLandmarks(), config, path="x"
    )
    assert zero.geometry.dtype == np.float32
