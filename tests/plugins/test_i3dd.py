"""I3DD (SPD-Conv 3D-DenseNet) and the plain densenet3d: SPD is lossless, shapes, masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsent.contracts import Tokens
from avsent.errors import ConfigError
from avsent.layers.spd_conv import SPDConv, depth_to_space, space_to_depth
from avsent.model import count_parameters
from avsent.plugins import i3dd
from avsent.plugins.i3dd import PRESETS, DenseNet3D, DenseNet3DConfig, I3DDConfig
from avsent.registry import get_registry

SMALL = PRESETS["small"]


@pytest.mark.parametrize("time", [False, True])
def test_space_to_depth_is_a_lossless_permutation(time):
    x = torch.randn(2, 3, 4, 6, 8)
    y = space_to_depth(x, time=time)
    factor = 8 if time else 4
    assert y.shape == (2, 3 * factor, 4 // (2 if time else 1), 3, 4)
    assert torch.equal(depth_to_space(y, time=time), x)
    assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)


def test_space_to_depth_stacks_the_sub_grids():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(1, 2, 1, 4, 4)
    y = space_to_depth(x)
    # channel groups in order: offsets (0,0), (0,1), (1,0), (1,1), each with all C channels
    assert torch.equal(y[:, 0:2], x[..., 0::2, 0::2])
    assert torch.equal(y[:, 2:4], x[..., 0::2, 1::2])
    assert torch.equal(y[:, 4:6], x[..., 1::2, 0::2])
    assert torch.equal(y[:, 6:8], x[..., 1::2, 1::2])


def test_space_to_depth_rejects_odd_sides():
    with pytest.raises(ValueError, match="divisible by 2"):
        space_to_depth(torch.zeros(1, 1, 2, 5, 4))


@pytest.mark.parametrize("spd", [True, False])
@pytest.mark.parametrize(("t", "c", "size"), [(16, 3, 64), (8, 1, 32), (5, 3, 48)])
def test_tokens_over_time(spd, t, c, size):
    config = (I3DDConfig if spd else DenseNet3DConfig)(**SMALL)
    model = DenseNet3D(
        config, in_channels=c, frames=t, size=size, downsampling="spd" if spd else None
    ).eval()
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, t // 2 :] = False
    tokens = model(torch.randn(2, c, t, size, size), mask)
    assert isinstance(tokens, Tokens)
    assert tokens.x.shape == (2, t, model.out_dim)
    assert tokens.mask.tolist() == mask.tolist()


def test_time_downsampling_shortens_tokens_and_mask():
    config = I3DDConfig(**SMALL, downsample_time=True)  # 4 halvings: 16 frames → 1
    model = DenseNet3D(config, in_channels=3, frames=32, size=32, downsampling="spd")
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[0, :10] = True
    tokens = model(torch.randn(1, 3, 32, 32, 32), mask)
    assert tokens.x.shape[1] == 2 and tokens.mask.tolist() == [[True, False]]


def test_sides_not_divisible_by_the_downsampling_are_a_clear_error():
    with pytest.raises(ConfigError, match=r"downsamples 5 times \(×32\).*H=48, W=48"):
        DenseNet3D(I3DDConfig(), in_channels=3, frames=16, size=48, downsampling="spd")
    with pytest.raises(ConfigError, match="T=12"):
        DenseNet3D(
            I3DDConfig(**SMALL, downsample_time=True), frames=12, size=32, downsampling="spd"
        )
    model = DenseNet3D(I3DDConfig(**SMALL), frames=8, size=32, downsampling="spd")
    with pytest.raises(ConfigError, match="W=40"):
        model(torch.zeros(1, 3, 8, 32, 40), torch.ones(1, 8, dtype=torch.bool))


def test_i3dd_has_no_strided_conv_or_pooling_and_densenet3d_does():
    i3dd = DenseNet3D(I3DDConfig(**SMALL), frames=8, size=32, downsampling="spd")
    plain = DenseNet3D(DenseNet3DConfig(**SMALL), frames=8, size=32, downsampling=None)
    convs = [m for m in i3dd.modules() if isinstance(m, nn.Conv3d)]
    assert all(m.stride == (1, 1, 1) for m in convs)
    assert not any(isinstance(m, (nn.MaxPool3d, nn.AvgPool3d)) for m in i3dd.modules())
    assert sum(isinstance(m, SPDConv) for m in i3dd.modules()) == 2 + len(SMALL["block_config"]) - 1
    assert any(isinstance(m, (nn.MaxPool3d, nn.AvgPool3d)) for m in plain.modules())


def test_trains(tmp_path):
    model = DenseNet3D(I3DDConfig(**SMALL), in_channels=1, frames=4, size=32, downsampling="spd")
    tokens = model(torch.randn(2, 1, 4, 32, 32), torch.ones(2, 4, dtype=torch.bool))
    weights = torch.randn(tokens.x.shape, generator=torch.Generator().manual_seed(0))
    (tokens.x * weights).sum().backward()
    # every weight gets a real gradient: a detached or dead path gives None or all zeros
    dead = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()
    ]
    assert dead == []


def test_paper_preset_size():
    model = DenseNet3D(I3DDConfig(), in_channels=3, frames=16, size=64, downsampling="spd")
    assert model.out_dim == 1024
    assert 12e6 < count_parameters(model) < 17e6
    assert I3DDConfig() == I3DDConfig(**PRESETS["densenet121-3d"])


@pytest.mark.parametrize("name", ["i3dd", "densenet3d"])
def test_registered(name):
    component = get_registry().get("video_encoder", name)
    model = component.build(component.config(**SMALL), in_channels=3, frames=8, size=32)
    assert model.out_dim > 0


@pytest.mark.parametrize("spd", [True, False])
def test_padded_frames_content_does_not_reach_the_tokens(spd):
    torch.manual_seed(0)
    config = I3DDConfig(growth_rate=4, block_config=(1, 1), num_init_features=8)
    model = DenseNet3D(
        config, in_channels=3, frames=8, size=16, downsampling="spd" if spd else None
    ).eval()
    x = torch.randn(1, 3, 8, 16, 16)
    mask = torch.tensor([[True] * 4 + [False] * 4])
    noisy = x.clone()
    noisy[:, :, 4:] = torch.randn(1, 3, 4, 16, 16) * 10
    with torch.no_grad():
        assert torch.allclose(model(x, mask).x, model(noisy, mask).x, atol=1e-6)


def _tiny_i3dd() -> DenseNet3D:
    torch.manual_seed(0)
    config = I3DDConfig(growth_rate=4, block_config=(1, 1), num_init_features=8)
    return DenseNet3D(config, in_channels=3, frames=8, size=16, downsampling="spd")


def test_no_padding_skips_the_mask_with_the_same_numbers(monkeypatch):
    """All frames real: the mask multiplies are skipped, and training sees identical values."""
    x = torch.randn(2, 3, 8, 16, 16)
    mask = torch.ones(2, 8, dtype=torch.bool)
    assert i3dd._padding(mask) is None and i3dd._padding(~mask) is not None

    def step(model: DenseNet3D) -> tuple[torch.Tensor, ...]:
        tokens = model.train()(x, mask).x
        tokens.square().sum().backward()
        return (tokens.detach(), *(p.grad for p in model.parameters()))

    fast = step(_tiny_i3dd())
    monkeypatch.setattr(i3dd, "_padding", lambda m: m)  # always multiply
    masked = step(_tiny_i3dd())
    for a, b in zip(fast, masked, strict=True):
        assert torch.equal(a, b)


class _TokensOnly(nn.Module):
    def __init__(self, encoder: DenseNet3D) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask).x


def test_a_trace_keeps_the_mask_whatever_the_example_batch():
    """Traced on a batch without padding, the graph must still zero padded frames."""
    model = _TokensOnly(_tiny_i3dd()).eval()
    x = torch.randn(1, 3, 8, 16, 16)
    full = torch.ones(1, 8, dtype=torch.bool)
    padded = torch.tensor([[True] * 4 + [False] * 4])
    with torch.no_grad():
        traced = torch.jit.trace(model, (x, full), check_trace=False)
        torch.testing.assert_close(traced(x, padded), model(x, padded))
