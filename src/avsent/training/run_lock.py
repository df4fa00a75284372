"""One process per run folder: a lock file holding the owner's pid, host and start time.

Two ``avsent train`` runs in one folder would interleave their split, checkpoints and
report. The lock is created with ``O_CREAT | O_EXCL`` (atomic), so only one
process gets it; a lock whose process is gone (same host, pid dead or reused) is stale and
taken over, so a ``kill -9`` never leaves a folder locked. A lock from another host cannot
be checked and is refused: delete the file if that run is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avsent.errors import RunLockedError

LOCK_FILE = ".avsent-run.lock"
#: a lock file this old that still holds no readable owner was left by a crash mid-write
UNREADABLE_STALE_S = 60.0


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the ``with`` block; raise RunLockedError if another live
    process holds it. ``enabled=False`` (the non-main ranks of a DDP run) does nothing."""
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_FILE
    owner = _owner()
    _acquire(lock, owner)
    try:
        remove_orphan_temporaries(run_dir)
        yield
    finally:
        if _read(lock) == owner:  # never delete a lock another process took over
            lock.unlink(missing_ok=True)


def remove_orphan_temporaries(run_dir: Path) -> int:
    """Delete the temporary files a killed run's atomic writes left (``.NAME.*.tmp``, see
    :func:`avsent.config.atomic_write_bytes`); safe only under the lock. Returns how many."""
    removed = 0
    for tmp in run_dir.rglob(".*.*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _acquire(lock: Path, owner: dict[str, Any]) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a stale lock removed, then the create retried
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(lock)
            if not _is_stale(lock, holder):
                raise RunLockedError(_refusal(lock, holder)) from None
            if _read(lock) == holder:  # still the stale one, not a new owner's
                lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(owner, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return
    raise RunLockedError(f"{lock.parent}: could not take the run lock {lock} (contended)")


def _refusal(lock: Path, holder: dict[str, Any] | None) -> str:
    if holder is None:
        who = "a process that is starting (its lock file is still empty)"
    else:
        who = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
    return (
        f"{lock.parent} is in use by {who}; wait for that run, or choose another --run-dir "
        f"(if that run is gone, delete {lock})"
    )


def _is_stale(lock: Path, holder: dict[str, Any] | None) -> bool:
    """Whether the lock's owner is certainly gone (only checkable on this host)."""
    if holder is None:
        with contextlib.suppress(FileNotFoundError):
            return time.time() - lock.stat().st_mtime > UNREADABLE_STALE_S
        return True
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    ticks = holder.get("process_start")
    return ticks is not None and ticks != _process_start(pid)  # the pid was reused


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "process_start": _process_start(os.getpid()),
    }


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name may hold spaces


def _read(lock: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None
