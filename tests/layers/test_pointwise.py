"""PointwiseConv3d: the same function as a 1×1×1 Conv3d, whichever kernel runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsent.layers import pointwise
from avsent.layers.pointwise import PointwiseConv3d


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("side", [1, 2, 4, 8])  # 8×8×8 = 512 positions: the conv kernel
def test_matches_conv3d_forward_and_backward(bias: bool, side: int) -> None:
    torch.manual_seed(0)
    layer = PointwiseConv3d(24, 16, bias=bias)
    x = torch.randn(3, 24, 8, side, side, requires_grad=True)
    y = layer(x)
    ref = nn.functional.conv3d(x, layer.weight, layer.bias)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, layer.weight], g)
    ref_grads = torch.autograd.grad(ref, [x, layer.weight], g)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_small_clips_run_as_a_matrix_product(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(nn.Conv3d, "forward", lambda self, x: calls.append("conv") or x)
    layer = PointwiseConv3d(4, 4)
    layer(torch.randn(2, 4, 4, 4, 4))  # 64 positions
    assert calls == []
    layer(torch.randn(2, 4, 8, 8, 8))  # 512 > MATMUL_MAX_POSITIONS
    layer(torch.randn(2, 4, 4, 4, 4).contiguous(memory_format=torch.channels_last_3d))
    assert calls == ["conv", "conv"]
    assert 64 <= pointwise.MATMUL_MAX_POSITIONS < 512


def test_state_dict_is_a_conv3d_one() -> None:
    layer = PointwiseConv3d(6, 5)
    conv = nn.Conv3d(6, 5, 1, bias=False)
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(1, 6, 2, 2, 2)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-6)
