"""``avsent preprocess``: shards, cache reuse, failed clips reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from command_helpers import run_cli, split_records

IN_PROCESS = ("--set", "data.workers=0")


def ready(output: str) -> int:
    return int(re.search(r"(\d+) clips ready", output).group(1))


@pytest.fixture
def folder(trained_run: Path, tmp_path: Path) -> Path:
    """Four clips of two labels, plus a corrupt one."""
    records = split_records(trained_run)
    for label in ("happy", "sad"):
        for r in [r for r in records if r["label"] == label][:2]:
            (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(r["path"], tmp_path / "data" / label)
    (tmp_path / "data" / "sad" / "corrupt.mp4").write_bytes(b"\x00" * 64)
    return tmp_path / "data"


def test_shards_split_the_clips_and_the_cache_is_reused(folder: Path, tmp_path: Path) -> None:
    args = ("preprocess", "drsn-audio", "--data", folder, *IN_PROCESS,
            "--set", f"data.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    first = run_cli(*args, "--shard", "0/2").output
    second = run_cli(*args, "--shard", "1/2", "--workers", "0").output
    assert ready(first) + ready(second) == 4  # the corrupt clip fails in whichever shard
    again = run_cli(*args).output
    assert ready(again) == 4
    assert "4 from the cache" in again
    assert "corrupt.mp4" in re.sub(r"\s+", "", again)  # named, however the line wraps
    assert "1 failed" in again


def test_bad_shard_is_a_usage_error(folder: Path) -> None:
    out = run_cli("preprocess", "--data", folder, "--shard", "2/2", expect=2).output
    assert "--shard" in out


def test_avsent_cache_dir_is_the_default_cache_folder(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVSENT_CACHE_DIR", str(tmp_path / "shared-cache"))
    out = run_cli("preprocess", "drsn-audio", "--data", folder, *IN_PROCESS).output
    assert ready(out) == 4 and str(tmp_path / "shared-cache") in re.sub(r"\s+", "", out)
    assert len(list((tmp_path / "shared-cache").glob("*/*.safetensors"))) == 4
