"""MAVSA-DI as the paper writes it, its CPU preset, a named variant, the Table 5 ablations
and the unimodal branches, as recipes.

``mavsa-di`` is the paper's model: DRSN → IMA (eqs. 4–7) and I3DD → IMA, CMA (eq. 8), FC,
with landmark geometry on the video branch. Every other recipe here derives from it
(:attr:`avsent.recipe.Recipe.base`) by one change, laid over it with the one slot-merge
rule, so ``avsent reproduce table5 --base mavsa-di-small`` applies the same change to the
small model:

=====================  ===================================================================
recipe                 differs from its base in
=====================  ===================================================================
``mavsa-di-wo-drsn``   audio: ``resnet-plain`` — the same residual network, no shrinkage
``mavsa-di-wo-i3dd``   video: ``downsampling = "strided"`` — each SPD-Conv a stride-2 conv
``mavsa-di-wo-ima``    audio_intra and video_intra: ``identity``
``mavsa-di-wo-cma``    fusion: ``concat`` — masked means of both branches, concatenated
``drsn-audio``         video: none (the audio branch alone)
``i3dd-visual``        audio: none (the visual branch alone)
``mavsa-di-plus``      a variant, not the paper: Transformer-layer IMA, MulT-style CMA
=====================  ===================================================================
"""

from __future__ import annotations

from typing import Any

from avsent.hookspecs import hookimpl
from avsent.plugins.i3dd import PRESETS as I3DD_PRESETS
from avsent.recipe import Recipe

#: The paper's Fig. 1: DRSN → IMA, I3DD → IMA, CMA, FC; geometry from facial landmarks.
MAVSA_DI: dict[str, Any] = {
    "faces": {"landmarks": {"name": "dlib"}},
    "audio": {"name": "drsn"},
    "video": {"name": "i3dd"},
    "audio_intra": {"name": "ima"},
    "video_intra": {"name": "ima"},
    "fusion": {"name": "cma"},
    "head": {"name": "linear"},
}

#: A CPU preset: narrower DRSN, the video plugin's small I3DD preset, narrower CMA.
MAVSA_DI_SMALL: dict[str, Any] = {
    "faces": {"crop_size": 32, "num_frames": 8},  # pinned: stays small if the defaults grow
    "audio": {"name": "drsn", "stem_channels": 16, "widths": [16, 32, 64]},
    "video": {"name": "i3dd", **I3DD_PRESETS["small"]},
    "fusion": {"name": "cma", "d_model": 64},
}

#: The variant: the attention parts as a Transformer encoder layer and a MulT stack.
PLUS: dict[str, Any] = {
    "audio_intra": {
        "name": "ima",
        "style": "transformer",
        "d_model": 128,
        "heads": 4,
        "attn_dropout": 0.1,
    },
    "video_intra": {
        "name": "ima",
        "style": "transformer",
        "d_model": 128,
        "heads": 4,
        "attn_dropout": 0.1,
    },
    "fusion": {"name": "cma-mult", "d_model": 64, "heads": 4, "layers": 2},
}

_IDENTITY = {"name": "identity"}

#: The Table 5 ablations: (description, Table 5 row, the change it makes to the full model).
ABLATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mavsa-di-wo-drsn": (
        "ablation: DRSN replaced by the same ResNet without soft thresholding",
        "w/o DRSN",
        {"audio": {"name": "resnet-plain"}},
    ),
    "mavsa-di-wo-i3dd": (
        "ablation: each SPD-Conv of I3DD replaced by a stride-2 conv (same kernel, widths)",
        "w/o I3DD",
        {"video": {"downsampling": "strided"}},
    ),
    "mavsa-di-wo-ima": (
        "ablation: no intra-modal attention (identity in both branches)",
        "w/o IMA",
        {"audio_intra": _IDENTITY, "video_intra": _IDENTITY},
    ),
    "mavsa-di-wo-cma": (
        "ablation: cross-modal attention replaced by concatenated masked means",
        "w/o CMA",
        {"fusion": {"name": "concat"}},
    ),
}

RECIPES: dict[str, Recipe] = {
    "mavsa-di": Recipe(
        "MAVSA-DI: DRSN → IMA and I3DD (+ landmark geometry) → IMA, CMA (eq. 8), FC",
        MAVSA_DI,
        reference="paper Fig. 1, §3.2–3.5, Table 4: MAVSA-DI",
    ),
    "mavsa-di-small": Recipe(
        "MAVSA-DI sized for CPUs: narrower DRSN, small I3DD, 8 frames of 32×32 faces",
        MAVSA_DI_SMALL,
        reference="paper Fig. 1 (reduced widths: paper silent on sizes)",
        base="mavsa-di",
    ),
    "mavsa-di-plus": Recipe(
        "variant (not the paper): Transformer-layer IMA and MulT cross-modal attention",
        PLUS,
        reference="avsent variant of MAVSA-DI",
        base="mavsa-di",
    ),
    **{
        name: Recipe(text, change, reference=f"Table 5: {row}", base="mavsa-di")
        for name, (text, row, change) in ABLATIONS.items()
    },
    "drsn-audio": Recipe(
        "audio only: MAVSA-DI's audio branch (DRSN → IMA) and FC",
        {"video": {"name": "none"}, "video_intra": _IDENTITY, "fusion": {"name": "passthrough"}},
        reference="MAVSA-DI audio branch",
        base="mavsa-di",
    ),
    "drsn-audio-small-corpus": Recipe(
        "drsn-audio for a few hundred clips: every training speaker trains (no validation "
        "speaker), last of 60 cosine epochs, per-speaker standardisation, frequency kept in "
        "the tokens, SpecAugment + time stretch (docs/training.md)",
        {
            "data": {"split": {"val_fraction": 0.0}, "speaker_norm": True},
            "audio": {"freq_pooling": "flatten"},
            "train": {
                "epochs": 60,
                "batch_size": 16,
                "lr": 1e-3,
                "augment": {
                    "time_masks": 2,
                    "time_mask_width": 10,
                    "freq_masks": 2,
                    "freq_mask_width": 12,
                    "time_stretch": 0.1,
                },
            },
        },
        reference="avsent setting, chosen on EmoDB's 8 speakers (docs/training.md)",
        base="drsn-audio",
    ),
    "i3dd-visual": Recipe(
        "visual only: MAVSA-DI's visual branch (I3DD → IMA) and FC",
        {"audio": {"name": "none"}, "audio_intra": _IDENTITY, "fusion": {"name": "passthrough"}},
        reference="MAVSA-DI visual branch",
        base="mavsa-di",
    ),
}


@hookimpl
def register_recipes(register):
    for name, recipe in RECIPES.items():
        register.recipe(name, recipe, description=recipe.description)
