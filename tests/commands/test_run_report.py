"""Live metrics files, Ctrl-C's resume command, and ``avsent report`` on a killed run."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest
from command_helpers import run_cli, tiny_args

from avsent.training.checkpoint import checkpoint_path, read_checkpoint
from avsent.training.loop import Trainer
from avsent.training.report import METRIC_COLUMNS


def test_each_epoch_is_a_row_of_metrics_csv_and_jsonl(trained_run: Path) -> None:
    history = read_checkpoint(checkpoint_path(trained_run, "last")).state["history"]
    with (trained_run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [float(r["val_macro_f1"]) for r in rows] == [h["val_macro_f1"] for h in history]
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history


@pytest.fixture(scope="module")
def interrupted(workspace: Path) -> tuple[Path, str]:
    """A 3-epoch run stopped by Ctrl-C during its second epoch → (run dir, CLI output)."""
    run_dir = workspace / "ctrl-c"
    original = Trainer._train_epoch

    def interrupt_second(self: Trainer, epoch: int, state: dict) -> tuple[float, float, float]:
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, state)

    args = ["train", "mavsa-di-small", *tiny_args(workspace), "--epochs", "3"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "_train_epoch", interrupt_second)
        result = run_cli(*args, "--run-dir", run_dir, "--no-progress", expect=1)
    return run_dir, result.output


def test_ctrl_c_keeps_finished_epochs_and_prints_the_resume_command(
    interrupted: tuple[Path, str],
) -> None:
    run_dir, output = interrupted
    assert f"avsent train --resume --run-dir {run_dir}" in output
    assert not (run_dir / "report.json").exists()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run_dir / "curves.png").is_file()


def test_report_rebuilds_a_killed_runs_report_then_the_printed_command_resumes(
    interrupted: tuple[Path, str],
) -> None:
    run_dir, output = interrupted
    out = run_cli("report", run_dir, "--no-progress").output
    assert "stopped after epoch 1 of 3" in out and "macro F1" in out
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs"] == 1 and report["best_epoch"] == 1 and report["split"] == "test"
    assert [r["epoch"] for r in report["history"]] == [1]
    assert sum(map(sum, report["confusion"])) == report["support"] > 0
    assert {"confusion_matrix.png", "curves.png"} <= set(report["plots"])

    command = output[output.index("avsent train --resume") :].split("\n")[0]
    resumed = run_cli(*shlex.split(command)[1:], "--no-progress").output
    assert "resuming after epoch 1" in resumed
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_report_of_a_folder_without_checkpoints_says_so(tmp_path: Path) -> None:
    result = run_cli("report", tmp_path, expect=1)
    assert "no checkpoint" in str(result.exception)
