"""Every hook avsent calls, in one place.

Each hook receives a :class:`avsent.registry.Register`, which has one method per
component kind: ``register.audio_encoder(name, factory, config=ConfigClass,
description="")`` and so on (``register.recipe(name, recipe, description="")``,
``register.command(click_command)``). The hook groups a plugin's components; the method
names their kind. A kind's contract (what goes in and what comes out) lives in
:mod:`avsent.contracts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from avsent.registry import Register

hookspec = pluggy.HookspecMarker("avsent")
hookimpl = pluggy.HookimplMarker("avsent")


@hookspec
def register_audio_frontends(register: Register) -> None:
    """Register audio front-ends: waveform → feature matrix [F, T].

    :param register: ``register.audio_frontend(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_audio_encoders(register: Register) -> None:
    """Register audio encoders: features [B, F, T] + mask → tokens [B, T', D] + mask.

    :param register: ``register.audio_encoder(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_video_encoders(register: Register) -> None:
    """Register video encoders: frames [B, C, T, H, W] + mask → tokens [B, T', D] + mask.

    :param register: ``register.video_encoder(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_intra_modal_blocks(register: Register) -> None:
    """Register intra-modal blocks: tokens [B, T, D] + mask → tokens [B, T, D] + mask.

    :param register: ``register.intra_modal(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_fusions(register: Register) -> None:
    """Register fusions: audio tokens and/or video tokens → one vector [B, D_fused].

    :param register: ``register.fusion(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register heads: fused vector [B, D] → class logits [B, K].

    :param register: ``register.head(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_recipes(register: Register) -> None:
    """Register model recipes: data naming the component for each slot.

    :param register: ``register.recipe(name, recipe, description="")`` with a
        :class:`avsent.recipe.Recipe`
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: a source of labelled clips (path, label, speaker, split).

    :param register: ``register.dataset(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_face_detectors(register: Register) -> None:
    """Register face detectors: RGB image [H, W, 3] → boxes [N, 4] (x, y, w, h).

    :param register: ``register.face_detector(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_landmark_backends(register: Register) -> None:
    """Register landmark backends: RGB image + boxes → landmarks [N, 68, 2].

    :param register: ``register.landmark_backend(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_face_embeddings(register: Register) -> None:
    """Register face embeddings: a frozen network's vector per face crop, computed once in
    preprocessing and cached (``faces.embedding``): crops [T, S, S, C] → [T, D].

    :param register: ``register.face_embedding(name, factory, config=ConfigClass, description="")``
    """


@hookspec
def register_commands(register: Register) -> None:
    """Register extra CLI commands.

    :param register: ``register.command(command)`` with a click command or group
    """
