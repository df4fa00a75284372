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
    """Build ``cls`` from ``data``, checking every field; unknown fields are errors.

    A field that left ``cls`` is named in its ``moved_fields`` ClassVar ({old name: what to
    do instead}); that message is the error, so an old config is told where it went."""
    if not isinstance(data, dict):
        raise ConfigError(path or cls.__name__, f"expected a table of fields, got {data!r}")
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        moved = getattr(cls, "moved_fields", {})
        name = next((old for old in moved if old in data), unknown[0])
        raise ConfigError(
            _join(path, name),
            moved.get(name)
            or f"unknown field; {cls.__name__} has: {', '.join(fields) or 'no fields'}",
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


class SlotFieldsDropped(UserWarning):
    """A slot changed component and settings that the new one has no field for were dropped."""


def merge(
    base: dict[str, Any],
    top: dict[str, Any],
    schema: type,
    dropped: list[str] | None = None,
) -> dict[str, Any]:
    """``top`` laid over ``base`` (plain dicts shaped like ``schema``), recursively.

    The one rule for a component slot (a :func:`choice_field`) whose ``name`` changes —
    used by ``--set``, recipes, ``reproduce`` and :func:`avsent.create_model` alike: the
    new component keeps the settings chosen for the old one (values other than the old
    component's defaults) that it also has a field for, and its own defaults otherwise; the
    chosen settings it has no field for are dropped (and described in ``dropped``, when
    given). A slot whose name stays is merged field by field.
    """
    attrs.resolve_types(schema)
    fields = attrs.fields_dict(schema)
    out = copy.deepcopy(base)
    for key, value in top.items():
        field = fields.get(key)
        current = out.get(key)
        if field is not None and "kind" in field.metadata:
            slot = _merge_slot(field.metadata["kind"], _as_slot(current), _as_slot(value))
            out[key], lost = slot
            if lost and dropped is not None:
                dropped.append(f"{key}: {lost}")
        elif field is not None and attrs.has(field.type) and isinstance(value, dict):
            inner: list[str] = []
            out[key] = merge(current if isinstance(current, dict) else {}, value, field.type, inner)
            if dropped is not None:
                dropped += [f"{key}.{note}" for note in inner]
        else:  # a plain value, or a field unknown to the schema (from_dict names it)
            out[key] = copy.deepcopy(value)
    return out


def _as_slot(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def _merge_slot(kind: str, current: Any, top: Any) -> tuple[Any, str]:
    """The merged slot, and a description of the chosen settings it dropped ("" if none)."""
    if not isinstance(top, dict) or not isinstance(current, dict):
        return copy.deepcopy(top), ""  # not a table: from_dict reports it
    name = top.get("name", current.get("name"))
    if name == current.get("name"):
        return {**copy.deepcopy(current), **copy.deepcopy(top)}, ""
    if name == NONE:  # an emptied slot: nothing of the old component can apply
        return {"name": NONE, **{k: v for k, v in top.items() if k != "name"}}, ""
    chosen = _chosen_settings(kind, current)
    wanted = _config_fields(kind, name)
    kept = {k: v for k, v in chosen.items() if k in wanted}
    lost = sorted(set(chosen) - set(kept))
    note = ""
    if lost:
        settings = ", ".join(f"{k} = {chosen[k]!r}" for k in lost)
        note = f"{name!r} has no field for {settings} (set for {current.get('name')!r}); dropped"
    rest = {k: v for k, v in top.items() if k != "name"}
    return {"name": name, **copy.deepcopy(kept), **copy.deepcopy(rest)}, note


def _config_class(kind: str, name: Any) -> type | None:
    from avsent.registry import get_registry

    if not isinstance(name, str) or name == NONE:
        return None
    try:
        return get_registry().get(kind, name).config
    except AvsentError:
        return None  # an unknown name: from_dict reports it with the choices


def _config_fields(kind: str, name: Any) -> set[str]:
    config = _config_class(kind, name)
    return set(attrs.fields_dict(config)) if config is not None else set()


def _chosen_settings(kind: str, slot: dict[str, Any]) -> dict[str, Any]:
    """The slot's fields whose values differ from its component's defaults."""
    config = _config_class(kind, slot.get("name"))
    defaults = to_dict(config()) if config is not None else {}
    return {k: v for k, v in slot.items() if k != "name" and to_dict(v) != defaults.get(k)}


def apply_overrides(
    data: dict[str, Any], overrides: dict[str, Any], schema: type
) -> dict[str, Any]:
    """Dotted overrides (``{"video.growth_rate": 16}``) merged into ``data`` by :func:`merge`;
    settings a changed slot drops are reported as a :class:`SlotFieldsDropped` warning."""
    import warnings

    out = data
    for dotted, value in overrides.items():
        top: dict[str, Any] = {}
        node = top
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        dropped: list[str] = []
        out = merge(out, top, schema, dropped)
        for note in dropped:
            warnings.warn(note, SlotFieldsDropped, stacklevel=2)
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
