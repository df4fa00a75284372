"""One tiny end-to-end run (synthetic clips, narrowed mavsa-di-small) shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from command_helpers import run_cli, tiny_args


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data and feature cache shared by every command test."""
    return tmp_path_factory.mktemp("commands")


@pytest.fixture(scope="session")
def trained_run(workspace: Path) -> Path:
    """``avsent train mavsa-di-small`` for 2 epochs on the tiny synthetic set, with probes."""
    run_dir = workspace / "run"
    args = ["train", "mavsa-di-small", *tiny_args(workspace), "--epochs", "2",
            "--set", "train.probes=true"]  # fmt: skip
    run_cli(*args, "--run-dir", run_dir, "--no-progress")
    return run_dir
