"""What several commands share: choosing the data and building the run config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import rich_click as click

from avsent.config import (
    NONE,
    load_toml,
    merge,
    parse_override,
    to_dict,
)
from avsent.errors import AvsentError, ConfigError, RegistryError
from avsent.registry import get_registry
from avsent.run_config import (
    RunConfig,
    default_run_config,
    load_run_config,
    run_config_dict,
    upgrade_config_dict,
)

MANIFEST_SUFFIXES = (".csv", ".jsonl")
#: beside a run's config.toml: the plugin and package behind each component it names
PLUGINS_FILE = "plugins.json"


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
    if config_path is None:
        return default_run_config(recipe or "mavsa-di", changes)
    if recipe is None:
        return load_run_config(config_path, changes)
    # RECIPE --config FILE: the recipe's config with the file laid over it, so a file may
    # hold only the fields it changes; a file written for another recipe is refused
    data = upgrade_config_dict(load_toml(config_path))
    named = data.get("recipe", recipe)
    if named != recipe:
        raise ConfigError(
            "recipe",
            f"{config_path} is a config of recipe {named!r}, not {recipe!r}: drop RECIPE to "
            f"train the file as it is, or edit its recipe line",
        )
    return default_run_config(recipe, changes, base=merge(run_config_dict(recipe), data, RunConfig))


def check_run(run: Path) -> None:
    """Refuse a folder that holds no model of its own (a k-fold or multi-seed parent, naming
    a fold to point at) or whose config names components no installed plugin registers."""
    from avsent.training.checkpoint import CONFIG_FILE, checkpoint_path

    if not run.is_dir():
        return
    if not checkpoint_path(run, "last").is_file():
        folds = sorted(run.glob("fold-*")) or sorted(run.glob("seed-*/fold-*"))
        if folds:
            raise AvsentError(
                f"{run}: a k-fold run has no model of its own; point at one fold, e.g. "
                f"{folds[0]} ({len(folds)} folds; their pooled figures are in summary.md)"
            )
    if (run / CONFIG_FILE).is_file():
        missing_components(run / CONFIG_FILE)


def missing_components(path: Path) -> None:
    """Refuse a saved config that names a component nobody registers, saying which plugin
    (as ``plugins.json`` beside it recorded at training time) to install."""
    data = load_toml(path)
    registry = get_registry()
    known = {c.kind: set() for c in registry.list()}
    for c in registry.list():
        known[c.kind].add(c.name)
    missing = [(slot, kind, name) for slot, kind, name in named_components(RunConfig, data)
               if name != NONE and name not in known.get(kind, ())]  # fmt: skip
    if not missing:
        return
    # a fold's config.toml lies one or two levels (seed-N/fold-K) below the run's record
    records = [p / PLUGINS_FILE for p in (path.parent, *list(path.parents)[1:3])]
    record = next((r for r in records if r.is_file()), None)
    provenance = json.loads(record.read_text()) if record else {}
    slot, kind, name = missing[0]
    origin = provenance.get(slot)
    if origin and origin.get("name") == name:
        dist = origin.get("distribution") or origin["plugin"]
        where = (f"plugin {origin['plugin']!r} (package {dist} {origin.get('version') or ''}"
                 f"): install it, e.g. `pip install {dist}`")  # fmt: skip
    else:
        where = "a plugin that is not installed here: install the package that registers it"
    raise RegistryError(
        f"{path}: {slot} = {name!r} ({kind}) is not registered; it came from {where.strip()}, "
        f"then check `avsent plugins`"
    )


def named_components(
    schema: type, data: dict[str, Any], prefix: str = ""
) -> list[tuple[str, str, str]]:
    """(dotted slot, kind, component name) of every component slot a config dict names."""
    attrs.resolve_types(schema)
    found = []
    for field in attrs.fields(schema):
        value = data.get(field.name)
        slot = f"{prefix}{field.name}"
        if "kind" in field.metadata and isinstance(value, dict) and "name" in value:
            found.append((slot, field.metadata["kind"], str(value["name"])))
        elif isinstance(field.type, type) and attrs.has(field.type) and isinstance(value, dict):
            found += named_components(field.type, value, f"{slot}.")
    return found


def write_plugin_provenance(run_dir: Path, config: RunConfig) -> None:
    """Record which plugin (and package) registered each component the run uses, so a
    machine without that plugin is told what to install (:func:`missing_components`)."""
    from importlib import metadata

    from avsent.config import atomic_write_text
    from avsent.registry import ENTRY_POINT_GROUP

    registry = get_registry()
    dists = {ep.name: ep.dist for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    record = {}
    for slot, kind, name in named_components(RunConfig, to_dict(config)):
        if name == NONE:
            continue
        plugin = registry.get(kind, name).plugin
        dist = dists.get(plugin)
        record[slot] = {"name": name, "plugin": plugin,
                        "distribution": dist.name if dist else None,
                        "version": dist.version if dist else None}  # fmt: skip
    atomic_write_text(run_dir / PLUGINS_FILE, json.dumps(record, indent=2) + "\n")
