"""avsent: audio-visual sentiment analysis (MAVSA-DI and friends) built from plugins."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from avsent.config import deep_merge
from avsent.model import AVModel, Batch, InputSpec, ModelOutput, build_model, compose
from avsent.registry import Component, get_registry

try:
    __version__ = metadata.version("avsent")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "AVModel",
    "Batch",
    "Component",
    "InputSpec",
    "ModelOutput",
    "__version__",
    "build_model",
    "compose",
    "create_model",
    "list_components",
]


def create_model(
    name: str, *, class_names: tuple[str, ...] | None = None, **overrides: Any
) -> AVModel:
    """A registered recipe's model, with nested overrides per slot.

    >>> create_model("mavsa-di-small", video={"growth_rate": 8})  # doctest: +SKIP
    """
    from avsent.labels import EMOTIONS
    from avsent.model import inputs_for
    from avsent.run_config import default_run_config, run_config_dict

    config = default_run_config(name, base=deep_merge(run_config_dict(name), overrides))
    return build_model(config, inputs_for(config), tuple(class_names or EMOTIONS))


def list_components(kind: str | None = None, pattern: str = "*") -> list[Component]:
    """Registered components, optionally of one kind and matching a glob pattern."""
    return get_registry().list(kind, pattern)
