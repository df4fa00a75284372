"""``avsent train`` end to end: run folder, re-runnable config, exact resume, k-fold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from command_helpers import run_cli, tiny_args

from avsent.config import to_dict
from avsent.errors import AvsentError
from avsent.run_config import load_run_config
from avsent.training.checkpoint import checkpoint_path, read_checkpoint
from avsent.training.trainer import train

HEADLINE = ("accuracy", "macro_recall", "macro_f1")


class Killed(Exception):
    """Stands in for a process killed between epochs."""


def test_run_folder_holds_config_split_checkpoints_and_reports(trained_run: Path) -> None:
    for name in (
        "config.toml",
        "split.json",
        "report.json",
        "report.md",
        "confusion_matrix.png",
        "per_class.png",
        "curves.png",
        "probes.csv",
    ):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "report.json").read_text())
    assert report["recipe"] == "mavsa-di-small" and report["split"] == "test"
    assert [r["epoch"] for r in report["history"]] == [1, 2]
    assert set(report["class_names"]) == {
        "sad", "angry", "surprise", "fear", "happy", "disgusted", "neutral",
    }  # fmt: skip
    assert all(0.0 <= report[m] <= 1.0 for m in HEADLINE)
    assert sum(map(sum, report["confusion"])) == report["support"] > 0
    split = json.loads((trained_run / "split.json").read_text())
    assert {c["part"] for c in split["clips"]} <= {"train", "val", "test"}
    last = read_checkpoint(checkpoint_path(trained_run, "last"))
    assert last.state["epoch"] == 2 and last.optimizer_state is not None
    assert (trained_run / "checkpoints" / "best.safetensors").read_bytes()[8:9] == b"{"
    assert "| macro F1 |" in (trained_run / "report.md").read_text()
    probes = (trained_run / "probes.csv").read_text().splitlines()
    assert probes[0].startswith("epoch,audio_train_accuracy") and len(probes) == 3


def test_saved_config_reruns_to_the_same_result(trained_run: Path, workspace: Path) -> None:
    again = workspace / "rerun"
    run_cli("train", "--config", trained_run / "config.toml", "--run-dir", again, "--no-progress")
    first = json.loads((trained_run / "report.json").read_text())
    second = json.loads((again / "report.json").read_text())
    assert {k: second[k] for k in HEADLINE} == {k: first[k] for k in HEADLINE}
    assert second["confusion"] == first["confusion"]


def test_resume_after_a_kill_matches_the_uninterrupted_run(
    trained_run: Path, workspace: Path
) -> None:
    config = load_run_config(trained_run / "config.toml")
    cut = workspace / "killed"

    def kill_after_first(record: dict) -> None:
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(config, run_dir=cut, callbacks=[kill_after_first], progress=False)
    assert not (cut / "report.json").exists()
    out = run_cli("train", "--run-dir", cut, "--resume", "--no-progress").output
    assert "resuming after epoch 1" in out

    whole = read_checkpoint(checkpoint_path(trained_run, "last"))
    resumed = read_checkpoint(checkpoint_path(cut, "last"))
    for name, value in whole.model_state.items():
        assert torch.equal(value, resumed.model_state[name]), name
    untimed = [{k: v for k, v in r.items() if k not in ("seconds", "data_wait_share")}
               for r in resumed.state["history"]]  # fmt: skip
    assert untimed == [
        {k: v for k, v in r.items() if k not in ("seconds", "data_wait_share")}
        for r in whole.state["history"]
    ]
    a = json.loads((trained_run / "report.json").read_text())
    b = json.loads((cut / "report.json").read_text())
    assert {k: a[k] for k in HEADLINE} == {k: b[k] for k in HEADLINE}


def test_train_refuses_to_overwrite_a_run_and_resume_needs_a_run_dir(
    trained_run: Path, workspace: Path
) -> None:
    result = run_cli("train", "--config", trained_run / "config.toml", "--run-dir", trained_run,
                     expect=1)  # fmt: skip
    assert isinstance(result.exception, AvsentError)
    assert "--resume" in str(result.exception)
    assert "needs the --run-dir" in run_cli("train", "--resume", expect=2).output


def test_speaker_kfold_writes_each_fold_and_a_mean_std_summary(workspace: Path) -> None:
    run_dir = workspace / "kfold"
    run_cli(
        "train", "mavsa-di-small", *tiny_args(workspace), "--epochs", "1",
        "--set", "data.split.method=speaker-kfold", "--set", "data.split.folds=2",
        "--folds", "all", "--run-dir", run_dir, "--no-progress",
    )  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["folds"] == 2 and summary["fold_ids"] == [0, 1]
    for metric in HEADLINE:
        values = summary[metric]["values"]
        assert summary[metric]["mean"] == pytest.approx(sum(values) / 2)
    for k in (0, 1):
        fold_report = json.loads((run_dir / f"fold-{k}" / "report.json").read_text())
        assert fold_report["accuracy"] == summary["accuracy"]["values"][k]
        assert load_run_config(run_dir / f"fold-{k}" / "config.toml").data.split.fold == k
    assert "± " in (run_dir / "summary.md").read_text()
    assert to_dict(load_run_config(run_dir / "config.toml"))["data"]["split"]["folds"] == 2
    # pooled over folds: the summed confusion matrix, every test clip once
    reports = [json.loads((run_dir / f"fold-{k}" / "report.json").read_text()) for k in (0, 1)]
    pooled = summary["pooled"]
    assert pooled["support"] == sum(r["support"] for r in reports)
    assert pooled["confusion"] == [
        [a + b for a, b in zip(*rows, strict=True)]
        for rows in zip(reports[0]["confusion"], reports[1]["confusion"], strict=True)
    ]
    assert {"weighted_recall", "weighted_f1"} <= set(pooled) and "weighted_f1" in summary
    # which speakers each fold tested, and each speaker's accuracy from the predictions
    tested = [row["test_speakers"] for row in summary["per_fold"]]
    assert sorted(s for t in tested for s in t) == sorted(summary["per_speaker"])
    for k, r in enumerate(reports):
        split = json.loads((run_dir / f"fold-{k}" / "split.json").read_text())
        assert tested[k] == sorted({c["speaker"] for c in split["clips"] if c["part"] == "test"})
        for speaker in tested[k]:
            rows = [p for p in r["predictions"] if p["speaker"] == speaker]
            hits = sum(p["label"] == p["predicted"] for p in rows)
            assert summary["per_speaker"][speaker]["accuracy"] == pytest.approx(hits / len(rows))
    assert (run_dir / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert "## Per speaker" in (run_dir / "summary.md").read_text()


def test_seeds_repeat_the_kfold_run_and_resume_keeps_finished_folds(workspace: Path) -> None:
    run_dir = workspace / "seeds"
    args = [
        "train", "mavsa-di-small", *tiny_args(workspace), "--epochs", "1",
        "--set", "data.split.method=speaker-kfold", "--set", "data.split.folds=2",
        "--folds", "all", "--run-dir", run_dir, "--no-progress",
    ]  # fmt: skip
    run_cli(*args, "--seeds", "3,5")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == [3, 5]
    per_seed = [json.loads((run_dir / f"seed-{s}" / "summary.json").read_text()) for s in (3, 5)]
    assert [s["seed"] for s in per_seed] == [3, 5]
    assert load_run_config(run_dir / "seed-5" / "fold-1" / "config.toml").train.seed == 5
    assert summary["accuracy"]["values"] == [s["pooled"]["accuracy"] for s in per_seed]
    assert "seed 5" in (run_dir / "summary.md").read_text()
    report = run_dir / "seed-3" / "fold-0" / "report.json"
    before = report.stat().st_mtime_ns
    out = run_cli("train", "--resume", "--run-dir", run_dir, "--folds", "all", "--seeds", "3,5",
                  "--no-progress").output  # fmt: skip
    assert report.stat().st_mtime_ns == before and "fold 0 (" not in out  # nothing retrained
    assert json.loads((run_dir / "summary.json").read_text())["accuracy"] == summary["accuracy"]
    assert "--seeds" in run_cli("train", "--resume", "--run-dir", run_dir, "--folds", "all",
                                expect=2).output  # fmt: skip
    assert "add --folds" in run_cli("train", "--seeds", "0,1", expect=2).output


@pytest.mark.slow
def test_same_command_under_torchrun_with_two_gloo_processes(workspace: Path) -> None:
    """The README's multi-process launch, on CPU: one run folder, one report, printed once."""
    run_dir = workspace / "ddp"
    command = [  # --standalone: torchrun picks and holds a free port itself
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "avsent", "train", "mavsa-di-small",
        *tiny_args(workspace), "--set", "train.device=cpu", "--epochs", "2",
        "--run-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run folder:") == 1  # only rank 0 prints
    report = json.loads((run_dir / "report.json").read_text())
    assert [r["epoch"] for r in report["history"]] == [1, 2]
    assert read_checkpoint(checkpoint_path(run_dir, "last")).state["epoch"] == 2


def test_speaker_norm_trains_and_single_file_prediction_says_why_it_cannot(workspace: Path):
    run_dir = workspace / "speaker-norm"
    args = ["train", "mavsa-di-small", *tiny_args(workspace), "--epochs", "1"]
    run_cli(*args, "--set", "data.speaker_norm=true", "--run-dir", run_dir, "--no-progress")
    assert json.loads((run_dir / "report.json").read_text())["support"] > 0
    clip = next((workspace / "synthetic").rglob("*.mp4"))
    result = run_cli("predict", run_dir, clip, expect=1)
    assert "data.speaker_norm" in str(result.exception)
