"""``--set train.tensorboard=true``: event files in RUN/tensorboard, or one clear error
when the optional package is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from command_helpers import run_cli, tiny_args

from avsent.errors import ConfigError


def test_tensorboard_without_the_package_is_one_clear_error(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a),
    )
    result = run_cli("train", "mavsa-di-small", *tiny_args(workspace), "--set",
                     "train.tensorboard=true", "--run-dir", tmp_path / "run", expect=1)  # fmt: skip
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "train.tensorboard" in message and "pip install tensorboard" in message
    assert "reading dataset" not in result.output  # stopped before reading the data
    assert not (tmp_path / "run").exists()


def test_a_run_with_tensorboard_logs_its_epochs(
    trained_run: Path, workspace: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard", reason="optional dependency: pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_cli("train", "mavsa-di-small", *tiny_args(workspace), "--epochs", "2", "--set",
            "train.tensorboard=true", "--run-dir", tmp_path / "run", "--no-progress")  # fmt: skip
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/accuracy", "val/macro_f1", "lr", "seconds"} <= tags
    assert [e.step for e in events.Scalars("val/macro_f1")] == [1, 2]
