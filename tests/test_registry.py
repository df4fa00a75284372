"""The plugin registry: loading, failures reported not fatal, duplicates, env switches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsent.contracts import Tokens
from avsent.errors import RegistryError
from avsent.hookspecs import hookimpl
from avsent.registry import KIND_HOOKS, Registry, get_registry


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
    assert not registry.register_plugin(Misspelled(), name="typo")
    assert "register_audio_encoder" in registry.plugins["typo"].error


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
