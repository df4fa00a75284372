"""Config plumbing: attrs classes ⇄ plain dicts ⇄ TOML, dotted overrides, clear errors.

Every component has an attrs config class. A component slot in a run config is a
:class:`Choice`: the registered name plus that component's config. In TOML a slot reads
``[video] name = "i3dd"  growth_rate = 32``. Errors always start with the dotted field name.
"""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w

from avsent.errors import AvsentError, ConfigError

NONE = "none"  #: the name that leaves a slot empty (e.g. ``video = "none"`` for audio-only)


@attrs.define
class Choice:
    """A component slot: which registered component (``name``) and its config."""

    name: str
    config: Any = None


def choice_field(kind: str, default: str) -> Any:
    """An attrs field holding a :class:`Choice` of ``kind`` with default component ``default``."""
    return attrs.field(factory=lambda: Choice(default), metadata={"kind": kind})


# -- attrs instance → plain dict ---------------------------------------------------


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) ready for TOML/JSON."""
    if isinstance(obj, Choice):
        params = to_dict(obj.config) if obj.config is not None else {}
        return {"name": obj.name, **params}
    if attrs.has(type(obj)):
        out = {}
        for f in attrs.fields(type(obj)):
            value = to_dict(getattr(obj, f.name))
            if value is not None:  # TOML has no null: absent means None
                out[f.name] = value
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- plain dict → attrs instance ---------------------------------------------------


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build ``cls`` from ``data``, checking every field; unknown fields are errors."""
    if not isinstance(data, dict):
        raise ConfigError(path or cls.__name__, f"expected a table of fields, got {data!r}")
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            _join(path, unknown[0]),
            f"unknown field; {cls.__name__} has: {', '.join(fields) or 'no fields'}",
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        kind = f.metadata.get("kind")
        if kind is not None:
            kwargs[name] = _structure_choice(kind, value, _join(path, name))
        else:
            kwargs[name] = _structure(f.type, value, _join(path, name))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(path or cls.__name__, _validator_message(exc)) from None


def _structure_choice(kind: str, value: Any, path: str) -> Choice:
    from avsent.registry import get_registry

    if isinstance(value, Choice):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(path, f"expected a component name or a table with 'name', got {value!r}")
    params = dict(value)
    name = params.pop("name")
    if name == NONE:
        if params:
            raise ConfigError(path, f"slot is 'none' but has fields {sorted(params)}")
        return Choice(NONE)
    try:
        component = get_registry().get(kind, name)
    except AvsentError as exc:
        raise ConfigError(_join(path, "name"), str(exc)) from None
    if component.config is None:
        if params:
            raise ConfigError(path, f"{name!r} takes no config fields, got {sorted(params)}")
        return Choice(name)
    return Choice(name, from_dict(component.config, params, path))


def _structure(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is None:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _structure(arg, value, path)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(path, " or ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(path, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if attrs.has(tp):
        if attrs.has(type(value)):
            return value
        return from_dict(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_structure(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(path, f"expected {len(args)} items, got {len(value)}")
            items = [
                _structure(a, v, f"{path}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        else:
            item_tp = args[0] if args else Any
            items = [_structure(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(path, f"expected a path, got {value!r}")
    return value


def _validator_message(exc: Exception) -> str:
    # attrs validators raise with the attribute as args[1]; keep the readable part.
    if len(exc.args) >= 2 and isinstance(exc.args[1], attrs.Attribute):
        return f"{exc.args[1].name}: {exc.args[0]}"
    return str(exc)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# -- overrides -----------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """``"video.growth_rate=16"`` → ``("video.growth_rate", 16)``; values read as TOML."""
    if "=" not in text:
        raise ConfigError(text, "an override must look like field.path=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as a component name
    return key, value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy). Setting ``slot.name`` resets that slot."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str):  # a slot given by name only
                child = {"name": child}
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        if parts[-1] == "name" and node.get("name") != value:
            node.clear()  # another component: its own defaults, not the old one's fields
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, recursively; a slot whose name changes is replaced whole."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        current = out.get(key)
        same_slot = not (
            isinstance(value, dict)
            and isinstance(current, dict)
            and "name" in value
            and value.get("name") != current.get("name")
        )
        if isinstance(value, dict) and isinstance(current, dict) and same_slot:
            out[key] = deep_merge(current, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- files -----------------------------------------------------------------------------


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path}: not a text file (not UTF-8), so not TOML") from None


def dump_toml(data: dict[str, Any]) -> str:
    return tomli_w.dumps(data)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
