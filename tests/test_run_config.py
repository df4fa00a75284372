"""Run configs from recipes: defaults, overrides by dotted name, re-loading a saved file."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsent.config import dump_toml, to_dict
from avsent.errors import ConfigError
from avsent.run_config import config_digest, default_run_config, load_run_config


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


def _as_an_earlier_release_wrote_it(config, per_utterance: bool, eps: float = 1e-5) -> dict:
    """``config``'s dict with mel-chroma's former per-clip standardisation fields."""
    data = to_dict(config)
    data["audio_frontend"].update(per_utterance_norm=per_utterance, norm_eps=eps)
    del data["data"]["utterance_norm"]
    return data


@pytest.mark.parametrize("per_utterance", [False, True])
def test_a_run_config_of_an_earlier_release_loads_with_the_setting_moved(
    tmp_path: Path, per_utterance: bool
):
    config = default_run_config("drsn-audio")
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(_as_an_earlier_release_wrote_it(config, per_utterance)))
    loaded = load_run_config(path)
    assert loaded.data.utterance_norm is per_utterance
    assert to_dict(loaded)["audio_frontend"] == to_dict(config)["audio_frontend"]


def test_an_earlier_std_floor_that_cannot_be_reproduced_is_refused(tmp_path: Path):
    path = tmp_path / "config.toml"
    data = _as_an_earlier_release_wrote_it(default_run_config("drsn-audio"), True, eps=1e-3)
    path.write_text(dump_toml(data))
    with pytest.raises(ConfigError, match=r"audio_frontend.norm_eps: 0.001 cannot be reproduced"):
        load_run_config(path)


def test_the_config_digest_sees_every_setting_but_the_ignored_ones():
    config = default_run_config("drsn-audio")
    moved_cache = default_run_config("drsn-audio", {"data.cache_dir": "/elsewhere"})
    other_seed = default_run_config("drsn-audio", {"train.seed": 7})
    assert config_digest(moved_cache) == config_digest(config)
    assert config_digest(other_seed) != config_digest(config)
    ignoring_seed = ("train.seed", "data.cache_dir")
    assert config_digest(other_seed, ignore=ignoring_seed) == config_digest(config, ignoring_seed)
