"""Recipes: each ablation is one swap; every recipe builds from entry points, trains a step
on mixed lengths; a small MAVSA-DI overfits a few clips with gradients in every part."""

from __future__ import annotations

import math

import pytest
import torch

import avsent
from avsent import Batch
from avsent.config import NONE
from avsent.model import count_parameters
from avsent.plugins.recipes import RECIPES
from avsent.registry import get_registry
from avsent.run_config import MODEL_SLOTS, default_run_config, run_config_dict

#: Per component: fields that make it tiny (tests only; every name a recipe uses appears).
TINY = {
    "drsn": {"stem_channels": 4, "widths": [4, 8], "units_per_stage": 1},
    "resnet-plain": {"stem_channels": 4, "widths": [4, 8], "units_per_stage": 1},
    "i3dd": {"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8},
    "densenet3d": {"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8},
    "ima": {"heads": 2},  # width: the encoder's (d_model 0), as identity keeps it
    "cma": {"d_model": 8, "heads": 2},
    "cma-mult": {"d_model": 8, "heads": 2, "layers": 1},
    "lstm": {"hidden": 8},
    "vcan-afm": {"channels": [4, 8]},
    "vcan-frames": {"channels": [4, 8]},
    "vcan-select": {"d_model": 8},
    "cmavf-2dcnn": {"channels": [4, 8]},
    "cmavf-3dcnn": {"channels": [4, 8], "reduction": 2},
    "classifier-group": {"hidden": 8},
}
TINY_INPUTS = {"audio_frontend": {"n_mels": 20}, "faces": {"crop_size": 16, "num_frames": 4}}
ALL_RECIPES = sorted(
    [*RECIPES, "rnn", "densenet3d", "vcan", "cmavf-ad"],
)


def tiny_overrides(name: str, **extra: dict) -> dict:
    """Overrides shrinking every part of recipe ``name`` (slot names stay the recipe's)."""
    config = run_config_dict(name)
    out = {k: dict(v) for k, v in TINY_INPUTS.items()}
    for slot in MODEL_SLOTS:
        component = config[slot]["name"]
        if component in TINY:
            out[slot] = dict(TINY[component])
    for slot, fields in extra.items():
        out.setdefault(slot, {}).update(fields)
    return out


def mixed_batch(model: avsent.AVModel, size: int = 4, seed: int = 0) -> Batch:
    """Random inputs with different real lengths per clip (audio and video)."""
    g = torch.Generator().manual_seed(seed)
    spec = model.inputs
    audio_steps, frames = 48, spec.video_frames
    audio_len = torch.tensor([48, 37, 20, 9][:size])
    video_len = torch.tensor([frames, frames - 1, max(1, frames // 2), 1][:size])
    return Batch(
        audio=torch.randn(size, spec.audio_features, audio_steps, generator=g)
        if model.uses_audio
        else None,
        audio_mask=(torch.arange(audio_steps)[None] < audio_len[:, None])
        if model.uses_audio
        else None,
        video=torch.rand(
            size, spec.video_channels, frames, spec.video_size, spec.video_size, generator=g
        )
        if model.uses_video
        else None,
        video_mask=(torch.arange(frames)[None] < video_len[:, None]) if model.uses_video else None,
        geometry=torch.randn(size, frames, spec.geometry_dim, generator=g)
        if model.uses_video and spec.geometry_dim
        else None,
        targets=torch.arange(size) % len(model.class_names),
    )


def loss_of(model: avsent.AVModel, batch: Batch) -> torch.Tensor:
    out = model(batch)
    loss = torch.nn.functional.cross_entropy(out.logits, batch.targets)
    extra = getattr(model.head, "extra_loss", None)
    return loss + extra(out.fused, batch.targets) if extra else loss


def test_all_recipes_are_registered_with_references():
    registry = get_registry()
    for name in ALL_RECIPES:
        recipe = registry.get("recipe", name).obj
        assert recipe.description and recipe.reference, name


#: the model's submodule each slot builds
MODULE_OF_SLOT = {
    "audio": "audio_encoder",
    "video": "video_encoder",
    "audio_intra": "audio_intra",
    "video_intra": "video_intra",
    "fusion": "fusion",
    "head": "head",
}


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("mavsa-di-wo-drsn", {"audio"}),
        ("mavsa-di-wo-i3dd", {"video"}),
        ("mavsa-di-wo-ima", {"audio_intra", "video_intra"}),
        ("mavsa-di-wo-cma", {"fusion"}),
    ],
)
def test_each_ablation_differs_from_mavsa_di_only_in_its_slot(name, changed):
    full = run_config_dict("mavsa-di")
    ablation = run_config_dict(name)
    differs = {slot for slot in MODEL_SLOTS if ablation[slot] != full[slot]}
    assert differs == changed
    assert {k: v for k, v in ablation.items() if k not in {*MODEL_SLOTS, "recipe"}} == {
        k: v for k, v in full.items() if k not in {*MODEL_SLOTS, "recipe"}
    }
    # built: every module outside the changed slots has the same names and shapes, except
    # the head's input width after a fusion of another width (w/o CMA: concatenation)
    outside = {MODULE_OF_SLOT[s] for s in MODEL_SLOTS if s not in changed}
    a = _shapes(avsent.create_model("mavsa-di", **tiny_overrides("mavsa-di")))
    b = _shapes(avsent.create_model(name, **tiny_overrides(name)))
    assert a != b

    def kept(shapes: dict) -> dict:
        return {
            k: v
            for k, v in shapes.items()
            if k.split(".")[0] in outside and not (changed == {"fusion"} and k == "head.fc.weight")
        }

    assert kept(a) == kept(b)


def test_wo_i3dd_only_swaps_each_spd_conv_for_a_strided_conv():
    i3dd = avsent.create_model("mavsa-di").video_encoder
    strided = avsent.create_model("mavsa-di-wo-i3dd").video_encoder
    spd_convs = [m for m in i3dd.modules() if type(m).__name__ == "SPDConv"]
    convs = [m for m in strided.modules() if isinstance(m, torch.nn.Conv3d)]
    assert spd_convs and not [m for m in strided.modules() if type(m).__name__ == "SPDConv"]
    assert len([m for m in i3dd.modules() if isinstance(m, torch.nn.Conv3d)]) == len(convs)
    strided_ones = [c for c in convs if c.stride != (1, 1, 1)]
    assert len(strided_ones) == len(spd_convs)
    for spd, conv in zip(spd_convs, strided_ones, strict=True):
        inner = spd[1]
        assert inner.out_channels == conv.out_channels and inner.kernel_size == conv.kernel_size
        assert inner.in_channels == 4 * conv.in_channels  # space-to-depth: 4× channels
    assert i3dd.out_dim == strided.out_dim


@pytest.mark.parametrize(("name", "absent"), [("drsn-audio", "video"), ("i3dd-visual", "audio")])
def test_unimodal_recipes_leave_one_modality_out(name, absent):
    config = default_run_config(name)
    assert getattr(config, absent).name == NONE
    assert config.fusion.name == "passthrough"


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_recipe_builds_and_trains_a_step_on_mixed_lengths(name):
    torch.manual_seed(0)
    model = avsent.create_model(name, **tiny_overrides(name))
    batch = mixed_batch(model)
    model.train()
    loss = loss_of(model, batch)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"{name}: no gradient reached {no_grad}"
    model.eval()
    with torch.no_grad():
        probs = model(batch).logits.softmax(-1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))


def test_eval_output_of_a_clip_does_not_depend_on_its_audio_padding():
    torch.manual_seed(0)
    model = avsent.create_model("mavsa-di", **tiny_overrides("mavsa-di")).eval()
    batch = mixed_batch(model)
    batch.video_mask[:] = True
    alone = Batch(
        audio=batch.audio[2:3, :, :20],
        audio_mask=batch.audio_mask[2:3, :20],
        video=batch.video[2:3],
        video_mask=batch.video_mask[2:3],
        geometry=batch.geometry[2:3],
    )
    with torch.no_grad():
        torch.testing.assert_close(
            model(alone).logits[0], model(batch).logits[2], atol=1e-4, rtol=1e-4
        )


def test_full_size_presets_build_with_parameter_counts():
    counts = {
        name: count_parameters(avsent.create_model(name)) for name in ("mavsa-di", "mavsa-di-small")
    }
    assert counts["mavsa-di-small"] < counts["mavsa-di"]
    assert counts["mavsa-di"] > 1_000_000


@pytest.mark.slow
def test_full_size_mavsa_di_forward_backward():
    model = avsent.create_model("mavsa-di")
    batch = mixed_batch(model, size=2)
    loss_of(model, batch).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_small_model_overfits_a_handful_of_clips():
    """Loss falls far below chance (ln 7) on 8 random clips: gradients reach every part."""
    torch.manual_seed(0)
    no_dropout = {
        "audio": {"dropout": 0.0},
        "audio_intra": {"dropout": 0.0, "attn_dropout": 0.0},
        "video_intra": {"dropout": 0.0, "attn_dropout": 0.0},
        "fusion": {"attn_dropout": 0.0},
        "head": {"dropout": 0.0},
    }
    model = avsent.create_model("mavsa-di", **tiny_overrides("mavsa-di", **no_dropout))
    batch = mixed_batch(model, size=4, seed=1)
    second = mixed_batch(model, size=4, seed=2)
    batch = Batch(
        **{
            f: torch.cat([getattr(batch, f), getattr(second, f)])
            for f in ("audio", "audio_mask", "video", "video_mask", "geometry")
        },
        targets=torch.tensor([0, 1, 2, 3, 4, 5, 6, 0]),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(120):
        optimizer.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        if step == 0:
            dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
            assert not dead, f"parameters without gradient: {dead}"
        optimizer.step()
    assert loss.item() < 0.2 * math.log(7)


def test_swapping_any_part_is_a_config_change():
    """Parts from different plugins combine: MAVSA-DI's encoders with VCAN's selection
    fusion and CMAVF-AD's metric head, chosen by name only."""
    overrides = tiny_overrides("mavsa-di")
    overrides["fusion"] = {"name": "vcan-select", "d_model": 8}
    overrides["head"] = {"name": "metric", "loss": "center"}
    model = avsent.create_model("mavsa-di", **overrides)
    assert type(model.fusion).__name__ == "CrossModalSelection"
    batch = mixed_batch(model)
    loss = loss_of(model, batch)
    loss.backward()
    assert model.head.centers.grad is not None
