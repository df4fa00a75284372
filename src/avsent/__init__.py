"""avsent: audio-visual sentiment analysis (MAVSA-DI and friends) built from plugins.

The model API is imported on first use, so ``avsent --help`` and plugin listing do not
pay for importing torch.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("avsent")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from avsent.model import AVModel, Batch, InputSpec, ModelOutput, build_model, compose
    from avsent.registry import Component

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

_LAZY = {
    "AVModel": "avsent.model",
    "Batch": "avsent.model",
    "InputSpec": "avsent.model",
    "ModelOutput": "avsent.model",
    "build_model": "avsent.model",
    "compose": "avsent.model",
    "Component": "avsent.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avsent' has no attribute {name!r}")


def create_model(
    name: str, *, class_names: tuple[str, ...] | None = None, **overrides: Any
) -> AVModel:
    """A registered recipe's model, with nested overrides per slot.

    >>> model = create_model("mavsa-di-small", video={"growth_rate": 8})
    >>> model.uses_audio and model.uses_video, len(model.class_names)
    (True, 7)
    """
    from avsent.config import merge
    from avsent.labels import EMOTIONS
    from avsent.model import build_model, inputs_for
    from avsent.run_config import RunConfig, default_run_config, run_config_dict

    config = default_run_config(name, base=merge(run_config_dict(name), overrides, RunConfig))
    return build_model(config, inputs_for(config), tuple(class_names or EMOTIONS))


def list_components(kind: str | None = None, pattern: str = "*") -> list[Component]:
    """Registered components, optionally of one kind and matching a glob pattern."""
    from avsent.registry import get_registry

    return get_registry().list(kind, pattern)
