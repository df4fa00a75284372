"""MAVSA-DI, its CPU preset, the Table 5 ablations and the unimodal branches, as recipes.

Each recipe names the part in every model slot, so it reads on its own whatever the run
config's defaults are. An ablation is ``mavsa-di`` with exactly one part replaced by its
plain counterpart (docs/models.md):

=====================  ===================================================================
recipe                 differs from ``mavsa-di`` in
=====================  ===================================================================
``mavsa-di-wo-drsn``   audio: ``resnet-plain`` — the same residual network, no shrinkage
``mavsa-di-wo-i3dd``   video: ``densenet3d`` — the same 3D-DenseNet, no SPD-Conv
``mavsa-di-wo-ima``    audio_intra and video_intra: ``identity``
``mavsa-di-wo-cma``    fusion: ``concat`` — masked means of both branches, concatenated
=====================  ===================================================================

The ablations derive from the full model; ``mavsa-di-small`` shrinks widths, frames and
crop size for CPUs, and its ablations are the same one-slot swaps over it (``--set``).
"""

from __future__ import annotations

import copy
from typing import Any

from avsent.hookspecs import hookimpl
from avsent.recipe import Recipe

#: The paper's Fig. 1: DRSN → IMA, I3DD → IMA, CMA, FC.
MAVSA_DI: dict[str, Any] = {
    "audio": {"name": "drsn"},
    "video": {"name": "i3dd"},
    "audio_intra": {"name": "ima", "d_model": 128, "heads": 4},
    "video_intra": {"name": "ima", "d_model": 128, "heads": 4},
    "fusion": {"name": "cma", "d_model": 64, "heads": 4, "layers": 2},
    "head": {"name": "linear"},
}

#: A CPU preset: narrower DRSN, the small I3DD, 8 frames of 32×32 faces, narrower attention.
MAVSA_DI_SMALL: dict[str, Any] = {
    "faces": {"crop_size": 32, "num_frames": 8},  # pinned: stays small if the defaults grow
    "audio": {"name": "drsn", "stem_channels": 16, "widths": [16, 32, 64]},
    # the video plugin's "small" preset (avsent.plugins.i3dd.PRESETS)
    "video": {
        "name": "i3dd",
        "growth_rate": 12,
        "block_config": [2, 4, 4],
        "num_init_features": 24,
    },
    "audio_intra": {"name": "ima", "d_model": 64, "heads": 4},
    "video_intra": {"name": "ima", "d_model": 64, "heads": 4},
    "fusion": {"name": "cma", "d_model": 32, "heads": 4, "layers": 1},
    "head": {"name": "linear"},
}


def replace_slots(base: dict[str, Any], **slots: dict[str, Any]) -> dict[str, Any]:
    """``base`` with whole slots swapped (their old fields dropped, not merged)."""
    out = copy.deepcopy(base)
    out.update(copy.deepcopy(slots))
    return out


def _audio_only(base: dict[str, Any]) -> dict[str, Any]:
    return replace_slots(
        base,
        video={"name": "none"},
        video_intra={"name": "identity"},
        fusion={"name": "passthrough"},
    )


def _visual_only(base: dict[str, Any]) -> dict[str, Any]:
    return replace_slots(
        base,
        audio={"name": "none"},
        audio_intra={"name": "identity"},
        fusion={"name": "passthrough"},
    )


_IDENTITY = {"name": "identity"}

RECIPES: dict[str, Recipe] = {
    "mavsa-di": Recipe(
        "MAVSA-DI: DRSN → IMA and I3DD → IMA, cross-modal attention, FC",
        MAVSA_DI,
        reference="paper Fig. 1, Table 4: MAVSA-DI",
    ),
    "mavsa-di-small": Recipe(
        "MAVSA-DI sized for CPUs: narrower DRSN, small I3DD, 8 frames of 32×32 faces",
        MAVSA_DI_SMALL,
        reference="paper Fig. 1 (reduced widths)",
    ),
    "mavsa-di-wo-drsn": Recipe(
        "ablation: DRSN replaced by the same ResNet without soft thresholding",
        replace_slots(MAVSA_DI, audio={"name": "resnet-plain"}),
        reference="Table 5: w/o DRSN",
    ),
    "mavsa-di-wo-i3dd": Recipe(
        "ablation: I3DD replaced by the plain 3D-DenseNet (no SPD-Conv)",
        replace_slots(MAVSA_DI, video={"name": "densenet3d"}),
        reference="Table 5: w/o I3DD",
    ),
    "mavsa-di-wo-ima": Recipe(
        "ablation: no intra-modal attention (identity in both branches)",
        replace_slots(MAVSA_DI, audio_intra=_IDENTITY, video_intra=_IDENTITY),
        reference="Table 5: w/o IMA",
    ),
    "mavsa-di-wo-cma": Recipe(
        "ablation: cross-modal attention replaced by concatenated masked means",
        replace_slots(MAVSA_DI, fusion={"name": "concat"}),
        reference="Table 5: w/o CMA",
    ),
    "drsn-audio": Recipe(
        "audio only: MAVSA-DI's audio branch (DRSN → IMA) and FC",
        _audio_only(MAVSA_DI),
        reference="MAVSA-DI audio branch",
    ),
    "i3dd-visual": Recipe(
        "visual only: MAVSA-DI's visual branch (I3DD → IMA) and FC",
        _visual_only(MAVSA_DI),
        reference="MAVSA-DI visual branch",
    ),
}


@hookimpl
def register_recipes(register):
    for name, recipe in RECIPES.items():
        register(name, recipe, description=recipe.description)
