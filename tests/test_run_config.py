"""Run configs from recipes: defaults, overrides by dotted name, re-loading a saved file."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsent.config import dump_toml, to_dict
from avsent.errors import ConfigError
from avsent.run_config import default_run_config, load_run_config


def test_recipe_fills_every_slot_with_its_component_config():
    config = default_run_config("mavsa-di")
    assert config.audio.name == "drsn" and config.audio.config is not None
    assert config.video.name == "i3dd" and config.video.config is not None
    assert config.fusion.name == "cma"


def test_override_reaches_a_component_field():
    config = default_run_config("mavsa-di", {"video.growth_rate": 16})
    assert config.video.config.growth_rate == 16


def test_bad_override_names_the_field_and_the_expectation():
    with pytest.raises(ConfigError) as info:
        default_run_config("mavsa-di", {"video.growth_rate": "fast"})
    assert info.value.field == "video.growth_rate"
    assert "integer" in info.value.problem
    with pytest.raises(ConfigError, match="video.growth_rat"):
        default_run_config("mavsa-di", {"video.growth_rat": 16})


def test_unknown_component_name_is_a_config_error():
    with pytest.raises(ConfigError, match="audio.name.*no audio encoder named 'drsm'"):
        default_run_config("mavsa-di", {"audio.name": "drsm"})


def test_saved_config_reloads_identically(tmp_path: Path):
    config = default_run_config("mavsa-di-small", {"train.epochs": 3, "audio.name": "resnet-plain"})
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(to_dict(config)))
    assert load_run_config(path) == config
    assert load_run_config(path, {"train.epochs": 4}).train.epochs == 4
