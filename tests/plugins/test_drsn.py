"""DRSN: soft thresholding, the threshold sub-network, shapes, masks, real features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avsent.config import Choice, from_dict
from avsent.errors import ConfigError
from avsent.media.audio import load_audio
from avsent.plugins.audio_features import MelChroma
from avsent.plugins.drsn import (
    DRSN,
    DRSNConfig,
    ResidualUnit,
    ResNetConfig,
    Shrinkage2d,
    soft_threshold,
)
from avsent.registry import get_registry

SMALL = {"stem_channels": 4, "widths": (4, 8, 8), "units_per_stage": 1, "dropout": 0.0}


def small(**changes) -> DRSN:
    return DRSN(DRSNConfig(**{**SMALL, **changes}), in_features=20)


# -- soft thresholding -----------------------------------------------------------------


def test_soft_threshold_zeroes_inside_and_keeps_sign():
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.2, 0.99, 1.5, 4.0])
    y = soft_threshold(x, torch.tensor(1.0))
    torch.testing.assert_close(y, torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 3.0]))
    outside = x.abs() > 1.0
    assert torch.equal(torch.sign(y[outside]), torch.sign(x[outside]))


@pytest.mark.parametrize("shared", [False, True])
def test_thresholds_are_a_fraction_of_the_mean_magnitude(shared):
    torch.manual_seed(0)
    shrink = Shrinkage2d(6, shared=shared).eval()
    x = torch.randn(3, 6, 5, 7) * torch.arange(1, 7).view(1, 6, 1, 1)
    mask = torch.ones(3, 7, dtype=torch.bool)
    tau = shrink.thresholds(x, mask)[:, :, 0, 0]  # [B, C]
    level = x.abs().mean(dim=(2, 3))
    if shared:
        level = level.mean(dim=1, keepdim=True).expand_as(tau)
        assert torch.allclose(tau, tau[:, :1].expand_as(tau))  # one τ per sample
    assert (tau >= 0).all() and (tau < level).all()  # α = sigmoid(·) ∈ (0, 1)
    y = shrink(x, mask)
    inside = x.abs() <= tau[:, :, None, None]
    assert inside.any() and (y[inside] == 0).all()
    assert torch.equal(torch.sign(y[~inside]), torch.sign(x[~inside]))


def test_thresholds_ignore_padded_steps():
    shrink = Shrinkage2d(3, shared=False).eval()
    x = torch.randn(1, 3, 4, 6)
    mask = torch.tensor([[True, True, True, True, False, False]])
    noisy = x.clone()
    noisy[..., 4:] = 100.0
    torch.testing.assert_close(shrink.thresholds(x, mask), shrink.thresholds(noisy, mask))


def test_gradients_reach_the_threshold_subnetwork():
    torch.manual_seed(0)
    model = small().train()
    model(torch.randn(3, 20, 16)).x.pow(2).sum().backward()
    shrinks = [m for m in model.modules() if isinstance(m, Shrinkage2d)]
    assert len(shrinks) == 3
    for shrink in shrinks:
        for name, param in shrink.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name


# -- structure -------------------------------------------------------------------------


def test_registry_builds_both_from_config():
    registry = get_registry()
    drsn = registry.get("audio_encoder", "drsn")
    plain = registry.get("audio_encoder", "resnet-plain")
    config = from_dict(drsn.config, {"widths": [8, 16], "shrinkage": "channel-shared"})
    model = drsn.build(config, in_features=140)
    assert model.out_dim == 16 and model.shrinkage == "channel-shared"
    assert any(isinstance(m, Shrinkage2d) for m in model.modules())
    baseline = plain.build(from_dict(plain.config, {"widths": [8, 16]}), in_features=140)
    assert not any(isinstance(m, Shrinkage2d) for m in baseline.modules())
    # Same network otherwise: the convolutions match one for one.
    convs = [p.shape for n, p in model.named_parameters() if "conv" in n or "stem" in n]
    assert convs == [p.shape for n, p in baseline.named_parameters() if "conv" in n or "stem" in n]
    with pytest.raises(ConfigError, match="shrinkage"):
        from_dict(drsn.config, {"shrinkage": "soft"})
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(plain.config, {"shrinkage": "off"})


def test_default_depth_and_paper_depth():
    assert len(DRSN(DRSNConfig(), in_features=140).units) == 6
    paper = DRSN(DRSNConfig(units_per_stage=4, stem_stride=2), in_features=140)
    assert len(paper.units) == 12 and paper.time_reduction == 16


def test_downsampling_identity_is_pooled_and_zero_padded():
    unit = ResidualUnit(2, 4, (2, 2), "off").eval()
    for conv in (unit.conv1, unit.conv2):
        torch.nn.init.zeros_(conv.weight)  # residual branch = 0: output is the identity
    x = torch.arange(32.0).view(1, 2, 4, 4)
    y, mask = unit(x, torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(y[:, :2], torch.nn.functional.avg_pool2d(x, 2))
    assert (y[:, 2:] == 0).all() and mask.shape == (1, 2)


@pytest.mark.parametrize("table", [{"stem_channels": 16, "widths": [8]}, {"widths": [16, 8]}])
def test_widths_must_not_shrink(table):
    with pytest.raises(ConfigError, match="widths: must not shrink"):
        from_dict(DRSNConfig, table)


# -- shapes and masks ------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [[1], [5, 3], [37, 8, 1], [64, 64]])
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"shrinkage": "channel-shared", "freq_pooling": "attention", "out_dim": 6},
        {"freq_pooling": "flatten"},
    ],
)
def test_token_shapes_and_masks(lengths, changes):
    model = small(**changes).eval()
    T = max(lengths)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    tokens = model(torch.randn(len(lengths), 20, T), mask)
    expected = [math.ceil(n / model.time_reduction) for n in lengths]
    assert tokens.x.shape == (len(lengths), math.ceil(T / model.time_reduction), model.out_dim)
    assert tokens.mask.sum(1).tolist() == expected
    assert (tokens.x[~tokens.mask] == 0).all()


@pytest.mark.parametrize(
    "changes",
    [{}, {"stem_stride": 2, "freq_pooling": "attention"}, {"freq_pooling": "flatten"}],
)
def test_padding_does_not_change_a_clips_tokens(changes):
    torch.manual_seed(0)
    model = small(**changes)
    model(torch.randn(4, 20, 40))  # one training step's worth of BatchNorm statistics
    model.eval()
    x = torch.randn(3, 20, 45)
    lengths = [45, 29, 3]
    mask = torch.arange(45)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batch = model(x, mask)
        for i, n in enumerate(lengths):
            alone = model(x[i : i + 1, :, :n])
            valid = int(batch.mask[i].sum())
            assert valid == alone.x.shape[1]
            torch.testing.assert_close(batch.x[i, :valid], alone.x[0], atol=1e-5, rtol=1e-5)


def test_flatten_keeps_every_frequency_bin_apart():
    model = small(freq_pooling="flatten").eval()
    # 20 rows → stem /2 → three stages /2 → 10, 5, 3, 2 bins of 8 channels
    assert model.output_bins(20) == 2 and model.out_dim == 8 * 2
    seen = {}
    model.bn_out.register_forward_hook(lambda m, i, out: seen.update(h=torch.relu(out)))
    with torch.no_grad():
        tokens = model(torch.randn(2, 20, 16))
    h = seen["h"]  # the last feature map [B, C, F', T']
    torch.testing.assert_close(tokens.x, h.flatten(1, 2).transpose(1, 2))
    # the mean over bins is what "mean" pooling would give: flatten holds strictly more
    torch.testing.assert_close(tokens.x.view(2, -1, 8, 2).mean(-1), h.mean(2).transpose(1, 2))


@pytest.mark.parametrize("height", [1, 7, 19, 140])
@pytest.mark.parametrize(("stem_stride", "freq_stride"), [(1, 1), (2, 2), (1, 3), (2, 3)])
@pytest.mark.parametrize("out_dim", [None, 6])
def test_flatten_width_matches_the_convolutions(height, stem_stride, freq_stride, out_dim):
    model = DRSN(
        DRSNConfig(
            **SMALL,
            stem_stride=stem_stride,
            freq_stride=freq_stride,
            freq_pooling="flatten",
            out_dim=out_dim,
        ),
        in_features=height,
    ).eval()
    with torch.no_grad():
        tokens = model(torch.randn(2, height, 12))
    assert tokens.x.shape[-1] == model.out_dim == (out_dim or 8 * model.output_bins(height))


def test_rejects_features_of_another_height():
    with pytest.raises(ValueError, match="built for 20 feature rows, got 24"):
        small()(torch.randn(2, 24, 9))


def test_a_lone_sample_trains():
    model = small().train()
    model(torch.randn(1, 20, 9)).x.sum().backward()  # BatchNorm1d alone would refuse
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[B, F, T\]"):
        small()(torch.randn(20, 9))


# -- real features ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["drsn", "resnet-plain"])
def test_learns_on_real_features(shared_data, name):
    """Forward and backward on real speech of different lengths: the loss goes down."""
    torch.manual_seed(0)
    frontend = MelChroma()
    files = [
        *sorted((shared_data / "speech/crema-d").glob("*.mp3"))[:3],
        *sorted((shared_data / "speech/emodb").glob("*.wav"))[:3],
    ]
    feats = [frontend(load_audio(p, frontend.sample_rate)) for p in files]
    T = max(f.shape[1] for f in feats)
    x = np.zeros((len(feats), 140, T), np.float32)
    for i, f in enumerate(feats):
        x[i, :, : f.shape[1]] = f
    mask = torch.arange(T)[None, :] < torch.tensor([f.shape[1] for f in feats])[:, None]
    x = torch.from_numpy(x)
    x = (x - x.mean(dim=(0, 2), keepdim=True)) / x.std(dim=(0, 2), keepdim=True)
    component = get_registry().get("audio_encoder", name)
    choice = Choice(name, component.config(**SMALL))
    encoder = component.build(choice.config, in_features=140)
    head = torch.nn.Linear(encoder.out_dim, 2)
    targets = torch.tensor([0, 1, 0, 1, 0, 1])
    params = [*encoder.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(encoder(x, mask).mean()), targets)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_resnet_config_has_no_shrinkage_field():
    assert not hasattr(ResNetConfig(), "shrinkage")


# -- the config's structure reaches the network -----------------------------------------------


def test_attention_pooling_has_its_own_weights_and_mean_pooling_none():
    def attention_params(model: DRSN) -> list[str]:
        return [n for n, _ in model.named_parameters() if n.startswith("freq_attention")]

    assert attention_params(small(freq_pooling="attention")) == [
        "freq_attention.weight",
        "freq_attention.bias",
    ]
    assert attention_params(small()) == attention_params(small(freq_pooling="flatten")) == []


@pytest.mark.parametrize(("shrinkage", "outputs"), [("channel-shared", 1), ("channel-wise", 8)])
def test_shrinkage_mode_sets_one_or_per_channel_thresholds(shrinkage, outputs):
    model = small(shrinkage=shrinkage)
    last = model.units[-1].shrink
    assert last.shared == (outputs == 1) and last.fc2.out_features == outputs
    x = torch.randn(2, 8, 3, 5)
    tau = last.eval().thresholds(x, torch.ones(2, 5, dtype=torch.bool))
    assert (tau.std(dim=1) == 0).all() == (outputs == 1)


def test_only_each_stages_first_unit_downsamples_and_the_stem_has_no_bias():
    model = small(units_per_stage=2, freq_stride=2, time_stride=3)
    assert [u.stride for u in model.units] == [(2, 3), (1, 1)] * 3
    assert model.stem.bias is None
    assert all(u.conv1.bias is None and u.conv2.bias is None for u in model.units)


def test_plain_resnet_and_a_config_without_shrinkage_are_off():
    from avsent.plugins.drsn import plain_resnet

    config = ResNetConfig(**SMALL)
    assert plain_resnet(config, in_features=20).shrinkage == "off"
    assert DRSN(config, in_features=20).shrinkage == "off"
    assert plain_resnet(config, in_features=20).in_features == 20
    # the ablation stays plain even when handed a DRSN config
    assert plain_resnet(DRSNConfig(**SMALL), in_features=20).shrinkage == "off"


@pytest.mark.parametrize("widths", [[], [4, 0], [1, 1]])
def test_widths_need_a_stage_and_positive_sizes(widths):
    if widths == [1, 1]:  # 1 is a positive width
        assert from_dict(DRSNConfig, {"widths": widths, "stem_channels": 1}).widths == (1, 1)
        return
    with pytest.raises(
        ConfigError, match=r"widths: needs at least one stage and positive widths, got"
    ):
        from_dict(DRSNConfig, {"widths": widths})


def test_a_shrinking_width_error_says_why():
    with pytest.raises(ConfigError, match="the identity path only adds channels$"):
        from_dict(DRSNConfig, {"widths": [16, 8]})
