"""Runs that travel: a run folder and its data copied elsewhere still evaluate and predict,
and a clip whose content changed is still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from command_helpers import run_cli, split_records, squash, tiny_args

from avsent.errors import DataError

HEADLINE = ("accuracy", "macro_recall", "macro_f1", "confusion", "support")


def report_of(output: str) -> dict:
    return json.loads(output[output.index("{") :])


@pytest.fixture(scope="module")
def home_run(trained_run: Path, workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained with its data in ``~/synthetic`` (the config says ``~``, split.json
    holds where that was), as on a laptop whose home folder is ``home-a``; the data is a
    copy of ``trained_run``'s."""
    home = tmp_path_factory.mktemp("home-a")
    shutil.copytree(workspace / "synthetic", home / "synthetic")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        run_cli("train", "mavsa-di-small", *tiny_args(workspace),
                "--set", "data.dataset.root=~/synthetic", "--epochs", "1",
                "--run-dir", home / "runs" / "r", "--no-progress")  # fmt: skip
    return home / "runs" / "r"


def test_a_run_moved_to_another_home_evaluates_and_predicts(
    home_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "home-b"
    shutil.copytree(home_run.parent.parent / "synthetic", other / "synthetic")
    shutil.copytree(home_run, other / "runs" / "r")
    monkeypatch.setenv("HOME", str(other))
    report = report_of(run_cli("evaluate", other / "runs" / "r", "--json").output)
    trained = json.loads((home_run / "report.json").read_text())
    for key in HEADLINE:
        assert report[key] == trained[key], key
    clip = other / Path(split_records(home_run)[0]["path"]).relative_to(home_run.parent.parent)
    rows = json.loads(run_cli("predict", other / "runs" / "r", clip, "--json").output)
    assert rows[0]["error"] is None and rows[0]["label"] in trained["class_names"]


def copy_elsewhere(trained_run: Path, workspace: Path, dest: Path) -> tuple[Path, list[str]]:
    """The run and its synthetic data copied under ``dest`` → (run copy, the ``--set``
    options that point it at the copied data and a fresh feature cache)."""
    shutil.copytree(workspace / "synthetic", dest / "synthetic")
    shutil.copytree(trained_run, dest / "run", ignore=shutil.ignore_patterns("evaluations"))
    sets = [f"data.dataset.root={dest / 'synthetic'}", f"data.cache_dir={dest / 'cache'}"]
    return dest / "run", [arg for s in sets for arg in ("--set", s)]


def test_a_copied_run_evaluates_on_its_copied_data(
    trained_run: Path, workspace: Path, tmp_path: Path
) -> None:
    run, sets = copy_elsewhere(trained_run, workspace, tmp_path)
    report = report_of(run_cli("evaluate", run, *sets, "--json").output)
    trained = json.loads((trained_run / "report.json").read_text())
    for key in HEADLINE:
        assert report[key] == trained[key], key
    assert any((tmp_path / "cache").glob("*/*.safetensors"))  # features of the copies


def test_a_changed_clip_is_still_refused(
    trained_run: Path, workspace: Path, tmp_path: Path
) -> None:
    run, sets = copy_elsewhere(trained_run, workspace, tmp_path)
    records = split_records(trained_run)
    i = next(i for i, r in enumerate(records) if r["part"] == "test")
    copied = tmp_path / "synthetic" / Path(records[i]["path"]).relative_to(workspace / "synthetic")
    shutil.copy(records[i - 1]["path"], copied)  # valid media, other content
    result = run_cli("evaluate", run, *sets, expect=1)
    assert isinstance(result.exception, DataError)
    message = squash(str(result.exception))
    name = json.loads((trained_run / "split.json").read_text())["clips"][i]["path"]
    assert squash(f"{name} has other content") in message
    assert "--splitall" in message and "--setdata.dataset.root" in message
