"""The plugin registry: loading, failures reported not fatal, duplicates, env switches."""

from __future__ import annotations

import attrs
import click
import pytest
import torch
from torch import nn

from avsent.contracts import Tokens
from avsent.errors import RegistryError
from avsent.hookspecs import hookimpl
from avsent.registry import KIND_HOOKS, KINDS, Component, Register, Registry, _reason, get_registry


class TinyAudio(nn.Module):
    out_dim = 4

    def __init__(self, *, in_features: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, self.out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        return Tokens(self.proj(x.transpose(1, 2)), mask)


class TinyPlugin:
    @hookimpl
    def register_audio_encoders(self, register):
        register.audio_encoder("tiny-audio", TinyAudio, description="test encoder")


def test_shipped_plugins_load_through_entry_points():
    registry = Registry()
    assert "heads" in registry.plugins
    assert registry.plugins["heads"].version is not None
    assert registry.get("head", "linear").plugin == "heads"


def test_register_plugin_object_adds_its_components():
    registry = Registry(autoload=False)
    assert registry.register_plugin(TinyPlugin(), name="tiny")
    comp = registry.get("audio_encoder", "tiny-audio")
    assert comp.plugin == "tiny" and comp.description == "test encoder"
    assert registry.plugins["tiny"].hooks == ["register_audio_encoders"]
    model = comp.build(in_features=3)
    out = model(torch.randn(2, 3, 5), torch.ones(2, 5, dtype=torch.bool))
    assert out.x.shape == (2, 5, 4)
    registry.unregister_plugin("tiny")
    with pytest.raises(RegistryError):
        registry.get("audio_encoder", "tiny-audio")


def test_a_clashing_plugin_is_not_loaded_and_the_first_keeps_its_name():
    registry = Registry(autoload=False)
    assert registry.register_plugin(TinyPlugin(), name="first")
    assert not registry.register_plugin(TinyPlugin(), name="second")
    assert "'tiny-audio' is already registered by plugin 'first'" in (
        registry.plugins["second"].error
    )
    assert registry.get("audio_encoder", "tiny-audio").plugin == "first"
    assert not registry.pm.is_registered(registry.pm.get_plugin("second"))


def test_a_plugin_failing_halfway_registers_nothing():
    class Halfway:
        @hookimpl
        def register_audio_encoders(self, register):
            register.audio_encoder("half-audio", TinyAudio)
            raise RuntimeError("second registration failed")

    registry = Registry(autoload=False)
    assert not registry.register_plugin(Halfway(), name="halfway")
    with pytest.raises(RegistryError):
        registry.get("audio_encoder", "half-audio")


def test_a_plugin_that_exits_at_import_is_reported(monkeypatch):
    """sys.exit() inside a plugin module must not end every avsent command."""

    class ExitingEntryPoint:
        name = "exiting"
        dist = None

        def load(self):
            raise SystemExit(3)

    monkeypatch.setattr(
        "avsent.registry.metadata.entry_points", lambda group: [ExitingEntryPoint()]
    )
    registry = Registry()
    assert "SystemExit: 3" in registry.plugins["exiting"].error


def test_failing_plugin_is_reported_and_others_keep_working():
    class Broken:
        @hookimpl
        def register_heads(self, register):
            raise RuntimeError("boom")

    registry = Registry(autoload=False)
    registry.register_plugin(TinyPlugin(), name="good")
    assert not registry.register_plugin(Broken(), name="broken")
    assert "RuntimeError: boom" in registry.plugins["broken"].error
    assert registry.get("audio_encoder", "tiny-audio")


def test_a_factory_failing_at_build_names_its_plugin():
    class Faulty(nn.Module):
        def __init__(self, *, in_features: int) -> None:
            raise ZeroDivisionError("division by zero")

    class FaultyPlugin:
        @hookimpl
        def register_audio_encoders(self, register):
            register.audio_encoder("faulty-audio", Faulty)

    registry = Registry(autoload=False)
    registry.register_plugin(FaultyPlugin(), name="faulty-plugin")
    with pytest.raises(RegistryError) as caught:
        registry.get("audio_encoder", "faulty-audio").build(in_features=3)
    assert str(caught.value) == (
        "audio_encoder 'faulty-audio' of plugin 'faulty-plugin' failed to build "
        "(ZeroDivisionError: division by zero)"
    )


def test_unknown_hook_name_is_caught_at_start_up():
    class Misspelled:
        @hookimpl
        def register_audio_encoder(self, register):  # missing "s"
            pass

    registry = Registry(autoload=False)
    plugin = Misspelled()
    assert not registry.register_plugin(plugin, name="typo")
    assert "register_audio_encoder" in registry.plugins["typo"].error
    assert not registry.pm.is_registered(plugin)  # refused by pluggy, not left registered


def test_unknown_component_suggests_a_close_name():
    registry = Registry(autoload=False)
    registry.register_plugin(TinyPlugin(), name="tiny")
    with pytest.raises(RegistryError, match="Did you mean 'tiny-audio'"):
        registry.get("audio_encoder", "tiny-audi")


def test_config_must_be_attrs_class():
    class BadConfig:
        pass

    class Bad:
        @hookimpl
        def register_heads(self, register):
            register.head("bad", nn.Identity, config=BadConfig)

    registry = Registry(autoload=False)
    assert not registry.register_plugin(Bad(), name="bad")
    assert "attrs class" in registry.plugins["bad"].error


def test_allow_list_env_loads_only_named_plugins(monkeypatch):
    monkeypatch.setenv("AVSENT_PLUGINS", "heads")
    registry = Registry()
    assert set(registry.plugins) == {"heads"}


def test_disable_autoload_keeps_only_avsents_own(monkeypatch):
    monkeypatch.setenv("AVSENT_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = Registry()
    assert "heads" in registry.plugins  # shipped: part of avsent itself


def test_list_filters_by_kind_and_pattern():
    registry = Registry(autoload=False)
    registry.register_plugin(TinyPlugin(), name="tiny")
    assert [c.name for c in registry.list("audio_encoder", "tiny*")] == ["tiny-audio"]
    assert registry.list("audio_encoder", "zzz*") == []
    with pytest.raises(RegistryError, match="unknown component kind"):
        registry.list("nonsense")


def test_every_kind_has_a_hook():
    import avsent.hookspecs as specs

    for hook in KIND_HOOKS.values():
        assert callable(getattr(specs, hook))


def test_global_registry_is_shared():
    assert get_registry() is get_registry()


# -- exactly what is registered, and exactly what errors say ------------------------------


@attrs.define
class TinyConfig:
    width: int = 2


def _factory(config, **dims):
    return (config, dims)


class EveryKind:
    """Components of two factory kinds (one with a config), two recipes and a command."""

    @hookimpl
    def register_audio_encoders(self, register):
        register.audio_encoder("e-audio", _factory, config=TinyConfig, description="an encoder")

    @hookimpl
    def register_heads(self, register):
        register.head("e-head", _factory)

    @hookimpl
    def register_recipes(self, register):
        register.recipe("e-recipe", {"recipe": 1}, description="a recipe")
        register.recipe("e-plain", {"recipe": 2})

    @hookimpl
    def register_commands(self, register):
        register.command(click.Command("e-command"))


def test_each_registration_keeps_every_field_it_was_given():
    registry = Registry(autoload=False)
    assert registry.register_plugin(EveryKind(), name="every", version="1.2")
    assert registry.plugins["every"].name == "every"
    assert registry.plugins["every"].version == "1.2"
    assert registry.get("audio_encoder", "e-audio") == Component(
        "audio_encoder", "e-audio", _factory, "every", TinyConfig, "an encoder"
    )
    assert registry.get("head", "e-head") == Component("head", "e-head", _factory, "every")
    assert registry.get("recipe", "e-recipe") == Component(
        "recipe", "e-recipe", {"recipe": 1}, "every", None, "a recipe"
    )
    assert registry.get("recipe", "e-plain") == Component(
        "recipe", "e-plain", {"recipe": 2}, "every", None, ""
    )
    command = registry.get("command", "e-command")
    assert (command.kind, command.name, command.plugin) == ("command", "e-command", "every")
    assert registry.components_of("every") == {
        "audio_encoder": ["e-audio"],
        "head": ["e-head"],
        "recipe": ["e-plain", "e-recipe"],
        "command": ["e-command"],
    }
    assert registry.components_of("nobody") == {}


def test_the_register_methods_are_named_and_documented_by_their_kind():
    for kind in KINDS:
        method = getattr(Register, kind)
        assert method.__name__ == kind
        assert method.__doc__


def test_build_passes_the_default_config_and_the_dims():
    component = Component("head", "h", _factory, "p", TinyConfig)
    assert component.build(in_features=3) == (TinyConfig(), {"in_features": 3})
    assert component.build(TinyConfig(5), in_features=3) == (TinyConfig(5), {"in_features": 3})
    assert Component("head", "h", lambda **dims: dims, "p").build(in_features=3) == {
        "in_features": 3
    }


def test_a_config_that_is_not_an_attrs_class_is_refused_by_name():
    register = Register("p")
    with pytest.raises(
        TypeError, match=r"^config for 'x' must be an attrs class, got <class 'int'>$"
    ):
        register.head("x", _factory, config=int)
    register.head("y", _factory, config=TinyConfig)
    assert [c.name for c in register.staged] == ["y"]


def test_lookup_errors_say_exactly_what_exists():
    registry = Registry(autoload=False)
    with pytest.raises(RegistryError) as info:
        registry.get("audio_encoder", "drsn")
    assert str(info.value) == "no audio encoder named 'drsn'. Available: none"
    registry.register_plugin(EveryKind(), name="every")
    registry.register_plugin(TinyPlugin(), name="tiny")
    with pytest.raises(RegistryError) as info:
        registry.get("audio_encoder", "zzz")
    assert str(info.value) == "no audio encoder named 'zzz'. Available: e-audio, tiny-audio"
    with pytest.raises(RegistryError) as info:
        registry.get("audio_encoder", "e-audi")
    assert (
        str(info.value)
        == "no audio encoder named 'e-audi'. Did you mean 'e-audio'? Available: e-audio, tiny-audio"
    )
    kinds = ", ".join(KINDS)
    for call in (lambda: registry.get("nonsense", "x"), lambda: registry.list("nonsense")):
        with pytest.raises(RegistryError) as info:
            call()
        assert str(info.value) == f"unknown component kind 'nonsense'; kinds are: {kinds}"


def test_list_without_a_kind_lists_every_kind():
    registry = Registry(autoload=False)
    registry.register_plugin(EveryKind(), name="every")
    assert [(c.kind, c.name) for c in registry.list()] == [
        ("audio_encoder", "e-audio"),
        ("head", "e-head"),
        ("recipe", "e-plain"),
        ("recipe", "e-recipe"),
        ("command", "e-command"),
    ]


def test_every_clash_is_named_in_the_error():
    registry = Registry(autoload=False)
    registry.register_plugin(EveryKind(), name="first")
    assert not registry.register_plugin(EveryKind(), name="second")
    assert registry.plugins["second"].error.startswith(
        "audio encoder 'e-audio' is already registered by plugin 'first'; "
        "head 'e-head' is already registered by plugin 'first'; "
    )


def test_a_registered_plugin_is_known_to_pluggy_by_its_name_until_unregistered():
    registry = Registry(autoload=False)
    plugin = EveryKind()
    registry.register_plugin(plugin, name="every")
    assert registry.pm.get_plugin("every") is plugin
    registry.unregister_plugin("every")
    assert not registry.pm.is_registered(plugin)
    assert "every" not in registry.plugins
    assert registry.list() == []
    registry.unregister_plugin("every")  # a second time is harmless


def test_a_failure_reason_names_the_exception_and_the_line_that_raised():
    def fail():
        raise ValueError("bad")

    def call():  # two frames below the handler: the innermost one is named
        fail()

    try:
        call()
    except ValueError as exc:
        reason = _reason(exc)
    line = fail.__code__.co_firstlineno + 1
    assert reason == f"ValueError: bad (at {__file__}:{line})"
    assert _reason(ValueError("bare")) == "ValueError: bare"


class FakeEntryPoint:
    """An installed plugin as importlib.metadata shows it, without installing one."""

    def __init__(self, name, plugin=None, *, dist="third-party", error=None):
        self.name = name
        if dist is not None:
            self.dist = attrs.make_class("Dist", ["name", "version"])(dist, "0.1")
        self._plugin = plugin
        self._error = error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._plugin


def _entry_points(monkeypatch, *points):
    monkeypatch.setattr("avsent.registry.metadata.entry_points", lambda group: list(points))


def test_entry_points_load_in_name_order_and_one_failure_stops_nothing(monkeypatch):
    _entry_points(
        monkeypatch,
        FakeEntryPoint("zeta", TinyPlugin()),
        FakeEntryPoint("alpha", error=ImportError("no module")),
        FakeEntryPoint("no-dist", EveryKind(), dist=None),
    )
    registry = Registry()
    assert list(registry.plugins) == ["alpha", "no-dist", "zeta"]
    assert registry.plugins["alpha"].name == "alpha"
    assert registry.plugins["alpha"].version == "0.1"
    assert registry.plugins["alpha"].error.startswith("ImportError: no module")
    assert registry.plugins["no-dist"].version is None
    assert registry.get("audio_encoder", "tiny-audio").plugin == "zeta"


@pytest.mark.parametrize(("value", "loaded"), [("", True), ("0", True), ("1", False)])
def test_disable_autoload_leaves_out_third_party_plugins(monkeypatch, value, loaded):
    _entry_points(monkeypatch, FakeEntryPoint("outside", TinyPlugin()))
    monkeypatch.setenv("AVSENT_DISABLE_PLUGIN_AUTOLOAD", value)
    assert ("outside" in Registry().plugins) is loaded


def test_the_allow_list_reads_comma_separated_names(monkeypatch):
    _entry_points(
        monkeypatch,
        FakeEntryPoint("one", TinyPlugin()),
        FakeEntryPoint("two", EveryKind()),
        FakeEntryPoint("three", TinyPlugin()),
    )
    monkeypatch.setenv("AVSENT_PLUGINS", " one , two,")
    assert set(Registry().plugins) == {"one", "two"}
