"""``avsent predict``: labels and probabilities per file; a bad file fails alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from command_helpers import run_cli, split_records


@pytest.fixture(scope="module")
def clips(trained_run: Path) -> list[Path]:
    records = split_records(trained_run)
    return [Path(r["path"]) for r in records if r["part"] == "test"][:2]


def test_predict_json_gives_label_and_probabilities(trained_run: Path, clips: list[Path]) -> None:
    rows = json.loads(run_cli("predict", trained_run, *clips, "--json").output)
    assert [Path(r["path"]) for r in rows] == clips
    for row in rows:
        probs = row["probabilities"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(probs, key=probs.get)
        assert row["error"] is None


def test_a_broken_file_reports_its_error_and_the_others_still_run(
    trained_run: Path, clips: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    result = run_cli("predict", trained_run, clips[0], broken, "--json", expect=1)
    text = result.output
    rows = json.loads(text[text.index("[") : text.rindex("]") + 1])
    assert rows[0]["label"] is not None and rows[0]["error"] is None
    assert rows[1]["label"] is None and "broken.mp4" in rows[1]["error"]


def test_table_output_shows_the_label(trained_run: Path, clips: list[Path]) -> None:
    label = json.loads(run_cli("predict", trained_run, clips[0], "--json").output)[0]["label"]
    out = run_cli("predict", trained_run, clips[0]).output
    assert "top 3 (%)" in out and f"│ {label}" in out


def test_folders_and_manifests_to_csv_with_a_bad_file_row(
    trained_run: Path, clips: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "folder" / "nested"
    folder.mkdir(parents=True)
    for clip in clips:
        (folder / clip.name).symlink_to(clip)
    (folder / "notes.txt").write_text("not media")  # not a media extension: ignored
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n" + "".join(f"{c},happy\n" for c in clips))
    out = tmp_path / "results.csv"
    args = ["predict", trained_run, tmp_path / "folder", manifest, "--out", out]
    printed = run_cli(*args, "--batch-size", "2", "--checkpoint", "last", expect=1).output
    assert "5 files: 4 classified, 1 failed" in printed
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["path"]).name for r in rows] == [
        "broken.mp4",
        *sorted(c.name for c in clips),
        *(c.name for c in clips),
    ]
    assert rows[0]["error"] and "broken.mp4" in rows[0]["error"] and not rows[0]["label"]
    assert [r["true_label"] for r in rows] == ["", "", "", "happy", "happy"]
    names = [k[2:] for k in rows[1] if k.startswith("p_")]
    for row in rows[1:]:
        probs = {n: float(row[f"p_{n}"]) for n in names}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(probs, key=probs.get) and not row["error"]
        assert row["modalities"] == "audio+video"


def test_batched_jsonl_equals_one_file_at_a_time(
    trained_run: Path, clips: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    run_cli("predict", trained_run, *clips, "--out", out, "--batch-size", "2")
    batched = [json.loads(line) for line in out.read_text().splitlines()]
    single = json.loads(run_cli("predict", trained_run, *clips, "--json",
                                "--batch-size", "1").output)  # fmt: skip
    assert len(batched) == len(single) == len(clips)
    for a, b in zip(batched, single, strict=True):
        assert a["label"] == b["label"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_out_must_be_csv_or_jsonl(trained_run: Path, clips: list[Path], tmp_path: Path) -> None:
    result = run_cli("predict", trained_run, clips[0], "--out", tmp_path / "r.txt", expect=2)
    assert ".csv or .jsonl" in result.output
