"""How ``--data`` and ``--config`` become run config fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsent.commands.options import build_config, data_overrides
from avsent.config import dump_toml, to_dict
from avsent.errors import ConfigError, RegistryError


def test_a_folder_a_manifest_a_name_and_name_colon_path(tmp_path: Path) -> None:
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n")
    assert data_overrides(str(tmp_path)) == {
        "data.dataset.name": "folder",
        "data.dataset.root": str(tmp_path.resolve()),
    }
    assert data_overrides(str(manifest))["data.dataset.path"] == str(manifest.resolve())
    assert data_overrides("emodb") == {"data.dataset.name": "emodb"}
    assert data_overrides(f"crema-d:{tmp_path}") == {
        "data.dataset.name": "crema-d",
        "data.dataset.root": str(tmp_path.resolve()),
    }
    assert data_overrides(None) == {}


def test_unknown_names_and_missing_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="emodb"):
        data_overrides("emodbb")
    with pytest.raises(ConfigError, match="no such folder or manifest"):
        data_overrides(str(tmp_path / "missing.csv"))


def test_build_config_layers_recipe_data_and_overrides(tmp_path: Path) -> None:
    config = build_config("mavsa-di-small", None, str(tmp_path), ("train.epochs=3",))
    assert config.recipe == "mavsa-di-small" and config.train.epochs == 3
    assert config.data.dataset.name == "folder"
    saved = tmp_path / "run.toml"
    saved.write_text(dump_toml(to_dict(config)))
    again = build_config(None, saved, None, (), {"train.epochs": 5})
    assert again.train.epochs == 5 and again.data.dataset.name == "folder"
