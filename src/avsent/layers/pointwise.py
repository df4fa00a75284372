"""A 1×1×1 Conv3d that runs as a matrix product where the clip has few positions left.

A pointwise convolution is a matrix product over channels, but oneDNN's CPU kernels for
it are slow when a clip has few positions (T·H·W) and many channels. On a Xeon with AMX
(one thread, batch 8, T=8), forward+backward of I3DD's 1×1×1 convs at 4×4, 2×2 and 1×1
spatial took 1.4-20× the time of ``weight @ x`` on the same numbers, in fp32 and bf16
(the 4096→512 SPD transition at 1×1: 68 ms against 10 ms in fp32); at 8×8 the two ran
level (whole step: benchmarks/bench_model.py). Parameters and state-dict entries are
those of ``nn.Conv3d``, so checkpoints load either way; results differ from the conv's
only by floating-point summation order.
"""

from __future__ import annotations

import torch
from torch import nn

#: positions per clip (T·H·W) up to which the matrix product is used; above it (8×8×8 and
#: up, where the two ran level) and for channels-last input the conv kernel runs
MATMUL_MAX_POSITIONS = 256


class PointwiseConv3d(nn.Conv3d):
    """``nn.Conv3d(in_channels, out_channels, 1)`` on [B, C, T, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        if t * h * w > MATMUL_MAX_POSITIONS or not x.is_contiguous():
            return super().forward(x)
        y = torch.matmul(self.weight.flatten(1), x.flatten(2))  # [O, C] @ [B, C, THW]
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.view(b, self.out_channels, t, h, w)
