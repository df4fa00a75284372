"""``avsent evaluate``: a run's test split, other parts, and another dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs
import pytest
import torch
from command_helpers import run_cli, split_records

from avsent.errors import AvsentError, ConfigError
from avsent.training.evaluation import evaluate_run


def test_evaluate_reproduces_the_training_report(trained_run: Path) -> None:
    out = run_cli("evaluate", trained_run, "--json").output
    report = json.loads(out[out.index("{") :])
    trained = json.loads((trained_run / "report.json").read_text())
    for key in ("accuracy", "macro_recall", "macro_f1", "confusion"):
        assert report[key] == trained[key], key
    assert report["split"] == "test" and report["checkpoint"] == "best"
    saved = trained_run / "evaluations" / "synthetic-test"
    assert (saved / "report.json").is_file() and (saved / "confusion_matrix.png").is_file()


def test_evaluate_all_clips_counts_every_usable_clip(trained_run: Path, tmp_path: Path) -> None:
    run_cli("evaluate", trained_run, "--split", "all", "--out", tmp_path, "--checkpoint", "last")
    report = json.loads((tmp_path / "report.json").read_text())
    split = json.loads((trained_run / "split.json").read_text())
    assert report["support"] + len(report["skipped_clips"]) == len(split["clips"])
    assert "macro F1" in (tmp_path / "report.md").read_text()


def label_folder(trained_run: Path, root: Path, labels: dict[str, str]) -> Path:
    """A folder dataset (``root/<label>/clip``) linking some of the run's clips."""
    clips = split_records(trained_run)
    for clip in clips:
        if clip["label"] in labels:
            target = root / labels[clip["label"]] / Path(clip["path"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(clip["path"], target)
    return root


def test_evaluate_on_another_dataset_folder(trained_run: Path, tmp_path: Path) -> None:
    folder = label_folder(trained_run, tmp_path / "mine", {"happy": "happy", "sad": "sad"})
    out = tmp_path / "report"
    run_cli("evaluate", trained_run, "--data", folder, "--out", out)
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "folder" and report["split"] == "all"
    assert report["support"] + len(report["skipped_clips"]) == 6  # 3 happy + 3 sad clips
    counted = {name for name, row in report["per_class"].items() if row["support"]}
    assert counted <= {"happy", "sad"}


def test_evaluate_rejects_labels_the_model_does_not_know(trained_run: Path, tmp_path: Path) -> None:
    folder = label_folder(trained_run, tmp_path / "odd", {"happy": "joyful"})
    result = run_cli("evaluate", trained_run, "--data", folder, expect=1)
    assert isinstance(result.exception, AvsentError)
    assert "joyful" in str(result.exception)


def test_evaluate_needs_a_run(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exit 1"):
        run_cli("evaluate", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_honours_train_device(trained_run: Path) -> None:
    def on_cuda(config):
        return attrs.evolve(config, train=attrs.evolve(config.train, device="cuda"))

    with pytest.raises(ConfigError, match="train.device"):
        evaluate_run(trained_run, reconfigure=on_cuda, progress=False)
