"""``avsent train --nproc 2``: the documented data-parallel form, 2 gloo processes on the CPU.

The real launch takes ~30 s on 2 cores (three Python processes each import torch), so it is
marked slow; the default run checks the command each process is given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from command_helpers import run_cli, tones

from avsent.commands import train as train_command
from avsent.training.checkpoint import checkpoint_path, read_checkpoint


def _args(tmp_path: Path, run_dir: Path) -> list[str]:
    sets = ["data.workers=0", f"data.cache_dir={tmp_path / 'cache'}", "train.device=cpu",
            "train.batch_size=4", "audio.widths=[8,16]", "audio.stem_channels=8",
            "audio_intra.d_model=16"]  # fmt: skip
    return ["train", "drsn-audio", "--data", str(tones(tmp_path / "tones")), "--epochs", "1",
            "--no-progress", "--run-dir", str(run_dir), "--nproc", "2",
            *(w for s in sets for w in ("--set", s))]  # fmt: skip


def test_nproc_launches_the_same_command_under_torch_distributed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(command: list[str], env: dict[str, str], check: bool):
        launched.append((command, env))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(train_command.subprocess, "run", fake_run)
    args = _args(tmp_path, tmp_path / "ddp")
    result = run_cli(*args)
    assert "launching 2 processes" in result.output
    [(command, env)] = launched
    assert command[1:9] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "avsent", "train", "drsn-audio"]  # fmt: skip
    options = args[2:]
    del options[options.index("--nproc") : options.index("--nproc") + 2]
    assert sorted(command[9:]) == sorted(options)  # every option but --nproc, once
    assert env[train_command.LAUNCHED_ENV] == "1"  # the launcher has checked the data
    assert not (tmp_path / "ddp").exists()  # this process trains nothing itself


@pytest.mark.slow
def test_train_nproc_2_trains_one_run_in_two_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    args = _args(tmp_path, run_dir)
    done = subprocess.run(
        [sys.executable, "-m", "avsent", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "launching 2 processes" in done.stdout
    assert done.stdout.count("run folder:") == 1  # rank 0 alone prints and writes
    assert read_checkpoint(checkpoint_path(run_dir, "last")).state["epoch"] == 1
