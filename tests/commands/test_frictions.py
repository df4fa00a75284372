"""Documented command forms that used to fail: RECIPE with --config, a k-fold parent given
to evaluate/predict, and a run whose plugin is not installed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from command_helpers import run_cli, squash, tones

from avsent.cli import main

TINY = ["--set", "audio.widths=[8,16]", "--set", "audio.stem_channels=8",
        "--set", "audio_intra.d_model=16", "--set", "data.workers=0"]  # fmt: skip


def _error(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    return squash(err)


def test_recipe_with_config_lays_the_file_over_the_recipe(tmp_path: Path) -> None:
    mine = tmp_path / "my.toml"
    mine.write_text('recipe = "drsn-audio"\n[train]\nlr = 0.0005\n')  # only what it changes
    run_dir = tmp_path / "run"
    result = run_cli("train", "drsn-audio", "--config", mine, "--data", tones(tmp_path / "tones"),
            "--epochs", "1", "--run-dir", run_dir, *TINY,
            "--set", f"data.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    assert "data: reading dataset 'folder'" in result.output  # not a terminal: a line...
    assert "Hashing files" not in result.output  # ...where a terminal gets progress bars
    saved = tomllib.loads((run_dir / "config.toml").read_text())
    assert saved["recipe"] == "drsn-audio" and saved["video"]["name"] == "none"  # the recipe
    assert saved["train"]["lr"] == 0.0005 and saved["train"]["epochs"] == 1  # file, --epochs
    record = json.loads((run_dir / "plugins.json").read_text())
    assert record["audio"] == {"name": "drsn", "plugin": "drsn", "distribution": "avsent",
                               "version": record["audio"]["version"]}  # fmt: skip


def test_recipe_with_another_recipes_config_is_refused(tmp_path, capsys) -> None:
    other = tmp_path / "other.toml"
    other.write_text('recipe = "i3dd-visual"\n')
    err = _error(capsys, "train", "mavsa-di", "--config", other, "--run-dir", tmp_path / "r")
    assert squash(f"{other} is a config of recipe 'i3dd-visual', not 'mavsa-di'") in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "report"])
def test_a_k_fold_parent_points_at_a_fold(tmp_path, capsys, command) -> None:
    parent = tmp_path / "kfold"
    for fold in ("fold-0", "fold-1"):
        (parent / fold / "checkpoints").mkdir(parents=True)
    extra = {"predict": ["clip.wav"], "export": ["--format", "onnx"]}.get(command, [])
    err = _error(capsys, command, parent, *extra)
    assert squash(f"point at one fold, e.g. {parent / 'fold-0'} (2 folds") in err


def test_a_run_whose_plugin_is_missing_names_it(tmp_path, capsys) -> None:
    run = tmp_path / "gru-run"
    run.mkdir()
    config = run_cli("config", "show", "drsn-audio").output
    (run / "config.toml").write_text(config.replace('name = "drsn"', 'name = "gru-audio"', 1))
    (run / "plugins.json").write_text(json.dumps({"audio": {
        "name": "gru-audio", "plugin": "example_gru", "distribution": "avsent-example-plugin",
        "version": "0.1.0"}}))  # fmt: skip
    err = _error(capsys, "evaluate", run)
    assert squash("audio = 'gru-audio' (audio_encoder) is not registered") in err
    assert squash("plugin 'example_gru' (package avsent-example-plugin 0.1.0)") in err
    assert squash("pip install avsent-example-plugin") in err
    (run / "plugins.json").unlink()  # a run from before plugins.json: no plugin to name
    assert squash("install the package that registers it") in _error(capsys, "evaluate", run)
