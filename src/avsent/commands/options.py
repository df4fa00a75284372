"""What several commands share: choosing the data and building the run config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import rich_click as click

from avsent.config import apply_overrides, from_dict, parse_override, to_dict
from avsent.errors import ConfigError
from avsent.registry import get_registry
from avsent.run_config import RunConfig, default_run_config, load_run_config

MANIFEST_SUFFIXES = (".csv", ".jsonl")


def data_option(func: Callable[..., Any]) -> Any:
    return click.option(
        "--data",
        metavar="DATASET|PATH",
        help=(
            "A registered dataset (`synthetic`, `emodb`, ...), a folder with one sub-folder "
            "per label, a `.csv`/`.jsonl` manifest, or `DATASET:PATH` (e.g. "
            "`crema-d:/data/CREMA-D`)."
        ),
    )(func)


def config_option(func: Callable[..., Any]) -> Any:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A run config TOML (e.g. a run's `config.toml`) instead of a recipe's defaults.",
    )(func)


def data_overrides(data: str | None) -> dict[str, Any]:
    """``--data`` → config overrides for ``data.dataset``."""
    if not data:
        return {}
    path = Path(data).expanduser()
    if path.is_dir():
        return {"data.dataset.name": "folder", "data.dataset.root": str(path.resolve())}
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return {"data.dataset.name": "manifest", "data.dataset.path": str(path.resolve())}
    name, colon, location = data.partition(":")
    if not colon and ("/" in data or path.suffix.lower() in MANIFEST_SUFFIXES):
        raise ConfigError("--data", f"{data}: no such folder or manifest file (.csv/.jsonl)")
    component = get_registry().get("dataset", name)  # an unknown name lists the known ones
    out: dict[str, Any] = {"data.dataset.name": name}
    if location:
        fields = {f.name for f in attrs.fields(component.config)} if component.config else set()
        field = next((f for f in ("root", "path") if f in fields), None)
        if field is None:
            raise ConfigError("--data", f"dataset {name!r} takes no folder or file")
        out[f"data.dataset.{field}"] = str(Path(location).expanduser().resolve())
    return out


def build_config(
    recipe: str | None,
    config_path: Path | None,
    data: str | None,
    overrides: tuple[str, ...],
    extra: dict[str, Any] | None = None,
) -> RunConfig:
    """The run config from a recipe or a TOML file, then ``--data``, ``--set`` and ``extra``."""
    changes = {**data_overrides(data), **dict(parse_override(o) for o in overrides)}
    changes.update(extra or {})
    if config_path is not None:
        if recipe is not None:
            raise click.UsageError("give a RECIPE or --config, not both")
        return load_run_config(config_path, changes)
    return default_run_config(recipe or "mavsa-di", changes)


def with_overrides(config: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """``config`` with dotted overrides applied (every field re-checked)."""
    return from_dict(RunConfig, apply_overrides(to_dict(config), changes, RunConfig))
