"""``avsent predict``: labels and probabilities per file; a bad file fails alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from command_helpers import run_cli


@pytest.fixture(scope="module")
def clips(trained_run: Path) -> list[Path]:
    records = json.loads((trained_run / "split.json").read_text())["clips"]
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
