"""SPD-Conv building blocks (Sunkara & Luo, 2022) for 5-D video tensors [B, C, T, H, W].

Space-to-depth moves each 2×2 (or 2×2×2) neighbourhood into the channels: the interleaved
sub-grids ``x[..., i::2, j::2]`` are stacked, so a downsampling keeps every input value
(a permutation, undone by :func:`depth_to_space`). A non-strided convolution then mixes
them. This replaces strided convolution and pooling, which discard information; with small
inputs such as 64×64 face crops, every pixel counts.
"""

from __future__ import annotations

import torch
from torch import nn

from avsent.layers.pointwise import PointwiseConv3d


def space_to_depth(x: torch.Tensor, *, time: bool = False, block: int = 2) -> torch.Tensor:
    """[B, C, T, H, W] → [B, C·b²(·b), T(/b), H/b, W/b]; sides must be divisible by ``block``."""
    b, c, t, h, w = x.shape
    bt = block if time else 1
    if h % block or w % block or t % bt:
        raise ValueError(
            f"space-to-depth by {block} needs {'T, ' if time else ''}H and W divisible by "
            f"{block}; got T={t}, H={h}, W={w}"
        )
    x = x.reshape(b, c, t // bt, bt, h // block, block, w // block, block)
    x = x.permute(0, 3, 5, 7, 1, 2, 4, 6)  # sub-grid offsets first: [b, ot, oh, ow, c, ...]
    return x.reshape(b, bt * block * block * c, t // bt, h // block, w // block)


def depth_to_space(x: torch.Tensor, *, time: bool = False, block: int = 2) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`."""
    b, cc, t, h, w = x.shape
    bt = block if time else 1
    c = cc // (bt * block * block)
    x = x.reshape(b, bt, block, block, c, t, h, w)
    x = x.permute(0, 4, 5, 1, 6, 2, 7, 3)
    return x.reshape(b, c, t * bt, h * block, w * block)


class SpaceToDepth(nn.Module):
    """Module form of :func:`space_to_depth` (channel factor ``factor``)."""

    def __init__(self, *, time: bool = False, block: int = 2) -> None:
        super().__init__()
        self.time = time
        self.block = block
        self.factor = block ** (3 if time else 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x, time=self.time, block=self.block)

    def extra_repr(self) -> str:
        return f"time={self.time}, block={self.block}"


class SPDConv(nn.Sequential):
    """Space-to-depth, then a non-strided conv: a lossless stand-in for a stride-2 layer."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, time: bool = False
    ) -> None:
        spd = SpaceToDepth(time=time)
        channels = in_channels * spd.factor
        conv = (
            PointwiseConv3d(channels, out_channels)
            if kernel_size == 1
            else nn.Conv3d(
                channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
            )
        )
        super().__init__(spd, conv)
