"""Every hook avsent calls, in one place.

Each hook receives a ``register`` callback; a plugin calls it once per component it
provides. Components are registered by kind, and a kind's contract (what goes in and
what comes out) lives in :mod:`avsent.contracts`.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("avsent")
hookimpl = pluggy.HookimplMarker("avsent")

Register = Callable[..., None]


@hookspec
def register_audio_frontends(register: Register) -> None:
    """Register audio front-ends: waveform → feature matrix [F, T].

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_audio_encoders(register: Register) -> None:
    """Register audio encoders: features [B, F, T] + mask → tokens [B, T', D] + mask.

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_video_encoders(register: Register) -> None:
    """Register video encoders: frames [B, C, T, H, W] + mask → tokens [B, T', D] + mask.

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_intra_modal_blocks(register: Register) -> None:
    """Register intra-modal blocks: tokens [B, T, D] + mask → tokens [B, T, D] + mask.

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_fusions(register: Register) -> None:
    """Register fusions: audio tokens and/or video tokens → one vector [B, D_fused].

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register heads: fused vector [B, D] → class logits [B, K].

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_recipes(register: Register) -> None:
    """Register model recipes: data naming the component for each slot.

    :param register: ``register(name, recipe, description="")`` with a :class:`avsent.recipe.Recipe`
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: a source of labelled clips (path, label, speaker, split).

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_face_detectors(register: Register) -> None:
    """Register face detectors: RGB image [H, W, 3] → boxes [N, 4] (x, y, w, h).

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_landmark_backends(register: Register) -> None:
    """Register landmark backends: RGB image + boxes → landmarks [N, 68, 2].

    :param register: ``register(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_commands(register: Register) -> None:
    """Register extra CLI commands.

    :param register: ``register(command)`` with a click command or group
    """
