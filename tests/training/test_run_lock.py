"""The run-folder lock: one live process per folder, stale locks taken over, orphans removed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from avsent.errors import RunLockedError
from avsent.training.run_lock import LOCK_FILE, hold_run_dir

HOLDER = """
import sys
from avsent.training.run_lock import hold_run_dir
with hold_run_dir(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_folder_held_by_a_live_process_is_refused_then_free(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunLockedError) as info, hold_run_dir(run_dir):
            pass
        message = str(info.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message
        assert str(run_dir) in message and "\n" not in message
    finally:
        holder.communicate("")  # the holder leaves its with block and releases the lock
    assert not (run_dir / LOCK_FILE).exists()
    with hold_run_dir(run_dir):
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] != holder.pid


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier"}
    lock.write_text(json.dumps(stale))
    with hold_run_dir(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_lock_from_another_host_is_refused(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere"}))
    with pytest.raises(RunLockedError, match="on elsewhere"), hold_run_dir(tmp_path):
        pass
    assert (tmp_path / LOCK_FILE).exists()  # not ours to remove


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyError), hold_run_dir(tmp_path):
        raise KeyError("the run failed")
    assert not (tmp_path / LOCK_FILE).exists()


def test_orphan_temporaries_are_removed_under_the_lock(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    orphan = checkpoints / ".last.safetensors.k2j3h4.tmp"  # atomic_write_bytes's naming
    orphan.write_bytes(b"half a checkpoint")
    keep = checkpoints / "last.safetensors"
    keep.write_bytes(b"whole")
    with hold_run_dir(tmp_path):
        assert not orphan.exists() and keep.exists()


def test_a_training_run_takes_and_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiny_training import make_tiny_config

    import avsent.training.trainer as trainer

    seen: list[bool] = []

    def prepare_data(config, run_dir, ctx, **kwargs):
        seen.append((Path(run_dir) / LOCK_FILE).is_file())
        raise RuntimeError("stop after the lock was taken")

    monkeypatch.setattr(trainer, "prepare_data", prepare_data)
    with pytest.raises(RuntimeError, match="stop after"):
        trainer.train(make_tiny_config(), run_dir=tmp_path / "run", progress=False)
    assert seen == [True] and not (tmp_path / "run" / LOCK_FILE).exists()

    (tmp_path / "run" / LOCK_FILE).write_text(
        json.dumps({"pid": 1, "host": "elsewhere", "started": "now"})
    )
    with pytest.raises(RunLockedError, match="is in use by pid 1 on elsewhere"):
        trainer.train(make_tiny_config(), run_dir=tmp_path / "run", progress=False)
    assert seen == [True]  # refused before touching the data
