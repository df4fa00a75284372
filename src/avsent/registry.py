"""The plugin manager: loads every ``avsent`` entry point and collects its components.

Shipped plugins (``avsent.plugins.*``) are entry points of the avsent distribution and go
through exactly the same path as a third party's. Environment switches:

* ``AVSENT_DISABLE_PLUGIN_AUTOLOAD=1`` loads only avsent's own entry points.
* ``AVSENT_PLUGINS=name,name`` loads only the named entry points (an allow-list).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any

import attrs
import pluggy

from avsent import hookspecs
from avsent.errors import AvsentError, RegistryError

ENTRY_POINT_GROUP = "avsent"
DISABLE_AUTOLOAD_ENV = "AVSENT_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_LIST_ENV = "AVSENT_PLUGINS"

#: kind name → the hook that registers it
KIND_HOOKS: dict[str, str] = {
    "audio_frontend": "register_audio_frontends",
    "audio_encoder": "register_audio_encoders",
    "video_encoder": "register_video_encoders",
    "intra_modal": "register_intra_modal_blocks",
    "fusion": "register_fusions",
    "head": "register_heads",
    "recipe": "register_recipes",
    "dataset": "register_datasets",
    "face_detector": "register_face_detectors",
    "landmark_backend": "register_landmark_backends",
    "face_embedding": "register_face_embeddings",
    "command": "register_commands",
}
KINDS: tuple[str, ...] = tuple(KIND_HOOKS)


@attrs.frozen
class Component:
    """One registered thing: a factory (most kinds), a recipe, or a CLI command."""

    kind: str
    name: str
    obj: Any
    plugin: str
    config: type | None = None
    description: str = ""

    def build(self, config: Any = None, **dims: Any) -> Any:
        """Call the factory with a config (defaults when ``None``) and the input dims.

        A factory's own failure is raised as a :class:`RegistryError` naming the component
        and its plugin, so a user knows whose code failed (avsent's errors pass as they are).
        """
        if config is None and self.config is not None:
            config = self.config()
        try:
            return self.obj(config, **dims) if self.config is not None else self.obj(**dims)
        except AvsentError:
            raise
        except Exception as exc:
            raise RegistryError(
                f"{self.kind} {self.name!r} of plugin {self.plugin!r} failed to build "
                f"({type(exc).__name__}: {exc})"
            ) from exc


@attrs.define
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str] = attrs.Factory(list)
    error: str | None = None


class Registry:
    """Components by kind and name, from every loaded plugin."""

    def __init__(self, *, autoload: bool = True) -> None:
        self.pm = pluggy.PluginManager("avsent")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        if autoload:
            self._load_entry_points()

    # -- loading ---------------------------------------------------------------
    def _load_entry_points(self) -> None:
        only_own = os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")
        allow = _split_names(os.environ.get(ALLOW_LIST_ENV, ""))
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            own = dist is not None and dist.name == "avsent"
            if (only_own and not own) or (allow and ep.name not in allow):
                continue
            version = dist.version if dist is not None else None
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() at import
                self.plugins[ep.name] = PluginInfo(ep.name, version, error=_reason(exc))
                continue
            self.register_plugin(module, name=ep.name, version=version)

    def register_plugin(self, plugin: object, name: str, version: str | None = None) -> bool:
        """Register one plugin object (module or class instance); report, never raise, on failure.

        Returns whether the plugin loaded. A plugin that registers a name another plugin
        already has is not loaded (its error names the clash), so one bad plugin never takes
        the whole tool down.
        """
        info = PluginInfo(name, version)
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:
            info.error = _reason(exc)
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            return False
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        register = Register(name)
        try:
            for hook_name in KIND_HOOKS.values():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=register)
        except Exception as exc:
            info.error = _reason(exc)
            self.pm.unregister(plugin)
            return False
        clashes = [
            f"{_kind_label(comp.kind)} {comp.name!r} is already registered by plugin "
            f"{self._components[comp.kind][comp.name].plugin!r}"
            for comp in register.staged
            if comp.name in self._components[comp.kind]
        ]
        if clashes:  # the later plugin loses, whole: the rest of the tool keeps working
            info.error = (
                f"{'; '.join(clashes)}: this plugin was not loaded (uninstall one of the "
                f"two, or choose plugins with {ALLOW_LIST_ENV}=name,name)"
            )
            self.pm.unregister(plugin)
            return False
        for comp in register.staged:
            self._components[comp.kind][comp.name] = comp
        return True

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and everything it registered (tests use this in ``finally``)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.plugins.pop(name, None)
        for by_name in self._components.values():
            for comp_name in [n for n, c in by_name.items() if c.plugin == name]:
                del by_name[comp_name]

    # -- lookup ----------------------------------------------------------------
    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; an unknown name lists what is available."""
        if kind not in self._components:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        found = self._components[kind].get(name)
        if found is not None:
            return found
        known = sorted(self._components[kind])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"no {_kind_label(kind)} named {name!r}.{hint} Available: {', '.join(known) or 'none'}"
        )

    def list(self, kind: str | None = None, pattern: str = "*") -> list[Component]:
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            if k not in self._components:
                raise RegistryError(f"unknown component kind {k!r}; kinds are: {', '.join(KINDS)}")
        return [
            comp
            for k in kinds
            for name, comp in sorted(self._components[k].items())
            if fnmatch.fnmatch(name, pattern)
        ]

    def components_of(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for comp in self.list():
            if comp.plugin == plugin:
                out.setdefault(comp.kind, []).append(comp.name)
        return out


FactoryRegistration = Callable[..., None]


def _factory_kind(kind: str, doc: str) -> FactoryRegistration:
    """A :class:`Register` method that stages a factory of ``kind``."""

    def method(
        self: Register,
        name: str,
        factory: Callable[..., Any],
        config: type | None = None,
        description: str = "",
    ) -> None:
        if config is not None and not attrs.has(config):
            raise TypeError(f"config for {name!r} must be an attrs class, got {config!r}")
        self.staged.append(Component(kind, name, factory, self.plugin, config, description))

    method.__name__ = method.__qualname__ = kind
    method.__doc__ = doc
    return method


class Register:
    """What every ``register_*`` hook receives: one method per component kind.

    A plugin calls the method of each kind it provides, e.g.
    ``register.audio_encoder("gru-audio", GRUEncoder, config=GRUConfig, description="…")``.
    ``factory(config, **dims)`` builds the component (``factory(**dims)`` when ``config`` is
    None); the dims each kind receives are listed in :mod:`avsent.contracts`. ``config`` is
    an attrs class whose fields become the slot's TOML fields. Nothing is registered until
    the plugin's hooks all return without error, so a plugin failing halfway leaves nothing.
    """

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.staged: list[Component] = []

    audio_frontend = _factory_kind("audio_frontend", "Waveform → features [F, T].")
    audio_encoder = _factory_kind("audio_encoder", "Features [B, F, T] + mask → Tokens.")
    video_encoder = _factory_kind("video_encoder", "Frames [B, C, T, H, W] + mask → Tokens.")
    intra_modal = _factory_kind("intra_modal", "Tokens → Tokens within one modality.")
    fusion = _factory_kind("fusion", "Audio and/or video Tokens → one vector [B, D].")
    head = _factory_kind("head", "Fused vector [B, D] → logits [B, K].")
    dataset = _factory_kind("dataset", "A source of labelled clips (a DatasetSource).")
    face_detector = _factory_kind("face_detector", "RGB image → face boxes (x, y, w, h).")
    landmark_backend = _factory_kind("landmark_backend", "RGB image + boxes → 68 points.")
    face_embedding = _factory_kind("face_embedding", "Face crops [T, S, S, C] → [T, D].")

    def recipe(self, name: str, recipe: Any, description: str = "") -> None:
        """A model recipe: an :class:`avsent.recipe.Recipe` (data, not a factory)."""
        self.staged.append(Component("recipe", name, recipe, self.plugin, None, description))

    def command(self, command: Any) -> None:
        """An extra CLI command: a click command or group."""
        self.staged.append(Component("command", command.name, command, self.plugin))


def _split_names(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def _reason(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _kind_label(kind: str) -> str:
    return kind.replace("_", " ")


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry
