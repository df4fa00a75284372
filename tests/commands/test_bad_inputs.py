"""Hostile inputs to the commands get one clear line naming the file or option, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsent.cli import main


def _error(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return "".join(err.split())  # rich wraps long lines to the terminal's width


def test_a_binary_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "weights.toml"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    err = _error(capsys, "train", "--config", binary, "--run-dir", tmp_path / "run")
    assert f"{binary}:notatextfile" in err


def test_a_cache_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "cache").write_text("")
    sets = ["--set", "data.dataset.clips_per_class=1", "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    err = _error(capsys, "preprocess", "drsn-audio", *sets, "--set", f"data.dataset.root={tmp_path / 's'}")  # fmt: skip
    assert "data.cache_dir" in err and f"{tmp_path / 'cache'}isafile" in err


def test_a_negative_fold(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _error(capsys, "train", "drsn-audio", "--folds", "-1", "--run-dir", tmp_path / "run")
    assert "--folds" in err and "foldnumbers(0,1,...)" in err


@pytest.mark.parametrize("name", ["../../..", "/tmp/elsewhere", "a/b", ".."])
def test_a_recipe_name_that_is_a_path_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, name: str
) -> None:
    """The recipe names the run folder: runs/../../..-DATE would land outside runs/."""
    config = tmp_path / "evil.toml"
    config.write_text(f'recipe = "{name}"\nruns_dir = "{tmp_path / "runs"}"\n')
    err = _error(capsys, "train", "--config", config, "--epochs", "1")
    assert f"recipe:{''.join(repr(name).split())}isnotarecipename" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.toml"]


def test_a_symlink_loop_and_a_newline_in_a_quoted_path_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A loop is one listed problem (not ``RuntimeError``); a quoted newline stays in its path."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    manifest = tmp_path / "clips.csv"
    manifest.write_text('path,label\nloop1,happy\n"two\nlines.wav",sad\nmissing.wav,sad\n')
    sets = ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
    err = _error(capsys, "preprocess", "drsn-audio", "--data", manifest, *sets)
    assert f"{manifest}:2:{tmp_path / 'loop1'}:symlinkloop" in err
    assert f"{manifest}:3:{tmp_path / 'two'}lines.wav:filenotfound" in err  # one path, line 3
    assert f"{manifest}:5:{tmp_path / 'missing.wav'}:filenotfound" in err
