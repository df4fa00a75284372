"""Face preprocessing per clip on the real recordings: avsent's pipeline against the
straightforward way, in the same run, with the same faces found.

* avsent: :func:`read_frames` (16 frames, seeking where the index allows) +
  :func:`extract_faces` (Haar on a 320-wide copy once, then in a small region around the
  face; gap filling, smoothing, 64×64 crops).
* straightforward: decode every frame to RGB, Haar on every full-resolution frame (same
  cascade, scale factor and neighbours, OpenCV's default smallest face), keep the largest.
* floor: decoding every frame of the file and nothing else (no conversion) — roughly the
  least any reader of these short clips pays, since their key frames are seconds apart.

"Same faces": at each frame avsent kept, its face box must overlap the straightforward
way's box for that frame (IoU ≥ 0.5). A contact sheet of avsent's crops is written to
``benchmarks/output/contact_sheet.png``, with the 68 landmarks of the backend named by
``AVSENT_BENCH_LANDMARKS`` (default ``dlib``; ``none`` for plain crops) drawn on crops
enlarged to 128 px; fitting them is timed apart, per face, after the three ways. OpenCV
runs one thread in both ways (as in a preprocessing worker process).

    .venv/bin/pytest benchmarks/bench_faces.py -p no:cacheprovider --benchmark-only -o addopts="" -s
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avsent.faces.pipeline import extract_faces
from avsent.media.video import read_frames
from avsent.plugins.haar import HaarConfig, HaarDetector
from avsent.registry import get_registry
from avsent.run_config import FacesConfig

DATA = Path(
    os.environ.get("AVSENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)
OUTPUT = Path(__file__).resolve().parent / "output"
HAAR = HaarConfig()
FACES = FacesConfig()
LANDMARKS = os.environ.get("AVSENT_BENCH_LANDMARKS", "dlib")
SHEET_SIZE = 128  #: crop side on the contact sheet when landmarks are drawn
RESULTS: dict[str, dict[Path, tuple[float, object]]] = {}


def clips() -> list[Path]:
    found = [
        *sorted((DATA / "av/crema-d").glob("*.flv")),
        *sorted((DATA / "av/mead").glob("*.mp4")),
        *sorted((DATA / "face-video/mead").glob("*_front_*.mp4"))[::4],
    ]
    if not found:
        pytest.skip(f"real media not found under {DATA}")
    return found


def avsent_way(path: Path, detector: HaarDetector):
    frames = read_frames(path, num_frames=FACES.num_frames)
    track = extract_faces(frames, detector, None, FACES, path=path)
    return frames.times, track


def straightforward_way(path: Path, detector: HaarDetector):
    times, boxes = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            grey = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            found = detector.classifier.detectMultiScale(
                grey, scaleFactor=HAAR.scale_factor, minNeighbors=HAAR.min_neighbors
            )
            found = np.asarray(found).reshape(-1, 4)
            times.append(frame.time)
            boxes.append(found[np.argmax(found[:, 2] * found[:, 3])] if len(found) else None)
    return np.array(times), boxes


def decode_floor(path: Path, detector: HaarDetector):
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


WAYS = {"avsent": avsent_way, "straightforward": straightforward_way, "floor": decode_floor}


@pytest.mark.parametrize("way", list(WAYS))
def test_face_preprocessing(benchmark, way):
    cv2.setNumThreads(1)
    paths = clips()
    detector = HaarDetector(HAAR)
    per_clip: dict[Path, tuple[float, object]] = {}

    def run_all():
        for path in paths:
            start = time.perf_counter()
            result = WAYS[way](path, detector)
            elapsed = time.perf_counter() - start
            if path not in per_clip or elapsed < per_clip[path][0]:
                per_clip[path] = (elapsed, result)

    rounds = 1 if way == "straightforward" else 3
    benchmark.pedantic(run_all, rounds=rounds, iterations=1)
    RESULTS[way] = per_clip
    benchmark.extra_info["clips"] = len(paths)
    benchmark.extra_info["seconds_per_clip"] = {
        p.name: round(t, 4) for p, (t, _) in per_clip.items()
    }


def landmark_row(path: Path, track, backend) -> tuple[np.ndarray, float, int]:
    """The clip's crops enlarged with the backend's 68 points drawn, its fitting seconds,
    and the number of faces fitted (the frames are decoded again, outside the timing)."""
    frames = read_frames(path, num_frames=FACES.num_frames).frames
    start = time.perf_counter()
    points = [
        backend.landmarks(image, box[None])[0]
        for image, box in zip(frames, track.boxes, strict=True)
    ]
    elapsed = time.perf_counter() - start
    crops = []
    for crop, box, pts in zip(track.crops, track.boxes, points, strict=True):
        # the crop's square, as extract_faces cuts it: box side × (1 + 2 margin), centred
        side = max(1, round(max(box[2], box[3]) * (1 + 2 * FACES.margin)))
        corner = np.array(
            [round(box[0] + box[2] / 2 - side / 2), round(box[1] + box[3] / 2 - side / 2)]
        )
        big = cv2.resize(crop, (SHEET_SIZE, SHEET_SIZE), interpolation=cv2.INTER_LINEAR)
        big = np.ascontiguousarray(np.repeat(big[..., None], 3, -1) if big.ndim == 2 else big)
        for x, y in (pts - corner + 0.5) * SHEET_SIZE / side - 0.5:
            cv2.circle(
                big, (round(x), round(y)), 1, (255, 0, 255), -1, cv2.LINE_AA
            )  # magenta: not skin, not green screen
        crops.append(big)
    return np.concatenate(crops, axis=1), elapsed, len(points)


def iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2) - max(ay1, by1))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_same_faces_speedup_and_contact_sheet(benchmark):
    if len(RESULTS) < len(WAYS):
        pytest.skip("run the whole file: this compares the three ways measured above")
    rows, report, sheet = [], [], []
    backend = (
        None if LANDMARKS == "none" else get_registry().get("landmark_backend", LANDMARKS).build()
    )
    fit_seconds, faces = 0.0, 0
    for path, (t_avsent, (times, track)) in RESULTS["avsent"].items():
        t_plain, (all_times, all_boxes) = RESULTS["straightforward"][path]
        t_floor = RESULTS["floor"][path][0]
        overlaps = []
        for t, box in zip(times, track.boxes, strict=True):
            plain = all_boxes[int(np.argmin(np.abs(all_times - t)))]
            overlaps.append(iou(box, plain) if plain is not None else 0.0)
        agree = float(np.mean(np.array(overlaps) >= 0.5))
        rows.append((path.name, t_plain, t_avsent, t_floor, t_plain / t_avsent, agree))
        if backend is None:
            sheet.append(np.concatenate(list(track.crops), axis=1))
        else:
            row, seconds, count = landmark_row(path, track, backend)
            sheet.append(row)
            fit_seconds, faces = fit_seconds + seconds, faces + count
        assert agree >= 0.9, f"{path.name}: avsent and the straightforward way disagree"
    header = f"{'clip':34} {'straightforward':>15} {'avsent':>8} {'floor':>8} {'speed-up':>9} {'same':>5}"
    report.append(header)
    for name, t_plain, t_avsent, t_floor, ratio, agree in rows:
        report.append(
            f"{name[:34]:34} {t_plain:14.3f}s {t_avsent:7.3f}s {t_floor:7.3f}s {ratio:8.1f}× {agree:5.0%}"
        )
    ratios = np.array([r[4] for r in rows])
    report.append(
        f"speed-up per clip: min {ratios.min():.1f}×, median {np.median(ratios):.1f}×, "
        f"max {ratios.max():.1f}× over {len(rows)} clips"
    )
    if backend is not None:
        frame_ms = 1000 * sum(t for t, _ in RESULTS["avsent"].values()) / faces
        report.append(
            f"landmarks {LANDMARKS!r}: {1000 * fit_seconds / faces:.2f} ms per face over {faces} "
            f"faces, against avsent's {frame_ms:.2f} ms per frame for decoding + Haar + crops"
        )
        benchmark.extra_info["landmark_ms_per_face"] = 1000 * fit_seconds / faces
    print("\n" + "\n".join(report))
    OUTPUT.mkdir(exist_ok=True)
    image = cv2.cvtColor(np.concatenate(sheet, axis=0), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(OUTPUT / "contact_sheet.png"), image)
    (OUTPUT / "bench_faces.txt").write_text("\n".join(report) + "\n")
    benchmark.extra_info["speedup_min"] = float(ratios.min())
    benchmark.extra_info["speedup_median"] = float(np.median(ratios))
    benchmark.pedantic(lambda: None, rounds=1)  # the figures above are the result
