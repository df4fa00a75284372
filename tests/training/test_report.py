"""Reports: JSON, Markdown and PNG files, and the rich tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console

from avsent.training.metrics import classification_report, summarize_folds
from avsent.training.report import (
    markdown_report,
    results_table,
    summary_table,
    write_metrics,
    write_report,
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
