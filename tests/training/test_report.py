"""Reports: JSON, Markdown and PNG files, and the rich tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from avsent.training.metrics import classification_report, per_speaker, summarize_folds
from avsent.training.report import (
    fold_summary,
    markdown_report,
    results_table,
    seed_summary,
    seed_summary_table,
    summary_table,
    write_metrics,
    write_report,
    write_seed_summary,
    write_summary,
)

NAMES = ("sad", "angry", "happy")
PNG = b"\x89PNG\r\n\x1a\n"


def sample_report() -> dict:
    report = classification_report([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], NAMES)
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.3 * e,
         "val_macro_f1": 0.25 * e, "lr": 1e-3}
        for e in (1, 2, 3)
    ]  # fmt: skip
    return {"recipe": "tiny", "split": "test", "best_epoch": 3, **report, "history": history,
            "skipped_clips": [["bad.mp4", "no audio stream"]]}  # fmt: skip


def render(renderable) -> str:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_write_report_creates_json_markdown_and_plots(tmp_path: Path) -> None:
    report = sample_report()
    paths = write_report(tmp_path, report)
    assert {p.name for p in paths} == {
        "report.json", "report.md", "confusion_matrix.png", "per_class.png", "curves.png",
    }  # fmt: skip
    for name in ("confusion_matrix.png", "per_class.png", "curves.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["accuracy"] == report["accuracy"]
    assert saved["plots"] == ["confusion_matrix.png", "per_class.png", "curves.png"]
    md = (tmp_path / "report.md").read_text()
    assert "| accuracy | 66.7 |" in md
    assert "| **sad** | 1 | 1 | 0 |" in md  # a confusion-matrix row
    assert "![curves](curves.png)" in md
    assert "`bad.mp4`: no audio stream" in md
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files


def test_report_without_history_has_no_curves(tmp_path: Path) -> None:
    report = sample_report()
    del report["history"]
    names = {p.name for p in write_report(tmp_path, report)}
    assert "curves.png" not in names and not (tmp_path / "curves.png").exists()
    assert "curves" not in markdown_report(json.loads((tmp_path / "report.json").read_text()))


def test_tables_show_headline_and_per_class_figures(tmp_path: Path) -> None:
    text = render(results_table(sample_report(), title="tiny"))
    assert "macro F1" in text and "angry" in text and "66.7" in text
    reports = [{"accuracy": a, "macro_recall": a, "macro_f1": a} for a in (0.6, 0.8)]
    summary = {**summarize_folds(reports), "fold_ids": [3, 5]}
    text = render(summary_table(summary))
    assert "70.0 ± 14.1" in text and "fold 3" in text and "fold 5" in text
    write_summary(tmp_path, summary)
    assert json.loads((tmp_path / "summary.json").read_text())["folds"] == 2
    assert "70.0 ± 14.1" in (tmp_path / "summary.md").read_text()


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def test_metrics_files_and_curves_without_a_validation_split(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 1.0 / e, "lr": 1e-3, "seconds": 0.5} for e in (1, 2)]
    write_metrics(tmp_path / "no-val", history, best_epoch=2)
    with (tmp_path / "no-val" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["val_loss"] == ""
    jsonl = (tmp_path / "no-val" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in jsonl] == history
    write_metrics(tmp_path / "val", sample_report()["history"], best_epoch=3)
    single, double = (png_width(tmp_path / d / "curves.png") for d in ("no-val", "val"))
    assert single < 0.6 * double  # one panel (loss), not an empty validation panel beside it


def fold_report(y_true: list[int], y_pred: list[int], speakers: list[str]) -> dict:
    report = classification_report(y_true, y_pred, NAMES)
    return {**report, "test_speakers": sorted(set(speakers)),
            "per_speaker": per_speaker(speakers, y_true, y_pred, NAMES)}  # fmt: skip


def test_fold_summary_pools_folds_and_lists_speakers(tmp_path: Path) -> None:
    reports = [
        fold_report([0, 1, 2, 2], [0, 1, 2, 0], ["s1", "s1", "s2", "s2"]),
        fold_report([0, 1, 2], [1, 1, 2], ["s3", "s3", "s3"]),
    ]
    summary = fold_summary(reports, [0, 1])
    assert summary["pooled"]["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert summary["pooled"]["accuracy"] == pytest.approx(5 / 7)
    assert [row["test_speakers"] for row in summary["per_fold"]] == [["s1", "s2"], ["s3"]]
    assert summary["per_speaker"]["s2"] == {"fold": 0, "support": 2, "accuracy": 0.5,
        **{m: summary["per_speaker"]["s2"][m] for m in ("macro_recall", "macro_f1")}}  # fmt: skip
    assert summary["per_speaker"]["s3"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["accuracy"]["values"] == [0.75, pytest.approx(2 / 3)]
    names = {p.name for p in write_summary(tmp_path, summary)}
    assert names == {"summary.json", "summary.md", "confusion_matrix.png", "per_class.png"}
    assert (tmp_path / "confusion_matrix.png").read_bytes().startswith(PNG)
    md = (tmp_path / "summary.md").read_text()
    assert "| accuracy | 71.4 | 70.8 ± 5.9 | 75.0, 66.7 |" in md
    assert "| weighted F1 |" in md and "| **sad** | 1 | 1 | 0 |" in md
    assert "| 0 | s1, s2 | 4 | 75.0 |" in md and "| s3 | 1 | 3 | 66.7 |" in md
    assert "pooled" in render(summary_table(summary))


def test_seed_summary_is_mean_and_sample_std_of_pooled_figures(tmp_path: Path) -> None:
    runs = [
        fold_summary([fold_report([0, 1, 2], pred, ["s1", "s1", "s2"])], [0])
        for pred in ([0, 1, 2], [0, 1, 0])
    ]
    summary = seed_summary(runs, [4, 7])
    assert summary["seeds"] == [4, 7]
    assert summary["accuracy"]["values"] == [1.0, pytest.approx(2 / 3)]
    assert summary["accuracy"]["std"] == pytest.approx(np.std([1.0, 2 / 3], ddof=1))
    assert [row["seed"] for row in summary["per_seed"]] == [4, 7]
    assert summary["per_speaker"]["s2"]["accuracy"] == 0.5
    assert summary["fold_mean"]["accuracy"] == pytest.approx(5 / 6)
    write_seed_summary(tmp_path, summary)
    md = (tmp_path / "summary.md").read_text()
    assert "| accuracy | 83.3 ± 23.6 | 100.0 | 66.7 |" in md
    assert "seed 7" in render(seed_summary_table(summary))
