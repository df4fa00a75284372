"""DRSN audio encoder (Zhao et al., IEEE TII 2020) and its plain-ResNet ablation.

The spectrogram [B, F, T] is a one-channel image. A 3×3 stem conv is followed by stages of
residual units; the first unit of each stage downsamples frequency and time by
``freq_stride``/``time_stride``. Each unit is pre-activation (BN-ReLU-Conv3×3 twice); in a
DRSN the residual branch then goes through soft thresholding with a learned threshold:

    a = GAP(|x|)  [B, C]                        (over valid positions only)
    α = sigmoid(FC(ReLU(BN(FC(a)))))            channel-wise: C values; channel-shared: 1
    τ = α · a     (channel-shared: α · mean_c a)  so 0 ≤ τ < mean |x|
    y = sign(x) · max(|x| − τ, 0)

and the identity is added. A downsampling identity is average pooling with the stride,
zero-padded with extra channels (no projection conv), as in the paper. After a final
BN-ReLU, frequency is pooled into tokens [B, T', D]: the mean or a learned attention over
the remaining bins (D = C), or ``flatten``, which keeps every bin's channels (D = C · F'),
so the tokens still say *where* in frequency the energy sits — pitch and formant
positions, which averaging over frequency throws away.

Padding: positions where the mask is False are zeroed before every convolution and left
out of the threshold statistics, so in eval mode a clip's tokens are the same whether or
not it is padded in a batch. During training BatchNorm's batch statistics still see the
zeros (a batch-level effect, not a per-clip leak).

The paper's net has 3 stages × 4 units at widths 4/8/16 and a stride-2 stem. The defaults
here are wider for spectrograms (32/64/128) and shallower (2 units) to stay fast on a
CPU, with the paper's stride-2 stem; ``units_per_stage = 4`` is the paper's depth.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from attrs import validators as v
from torch import nn

from avsent.contracts import Tokens
from avsent.hookspecs import hookimpl
from avsent.layers.masks import masked_mean, stride_mask, zero_padding

Shrinkage = Literal["channel-wise", "channel-shared", "off"]


def _check_widths(instance: ResNetConfig, attribute: attrs.Attribute, value: tuple) -> None:
    if not value or any(w < 1 for w in value):
        raise ValueError(f"needs at least one stage and positive widths, got {value}", attribute)
    stem = instance.stem_channels or value[0]
    if any(b < a for a, b in itertools.pairwise((stem, *value))):
        raise ValueError(
            f"must not shrink from stage to stage (stem {stem}), got {value}: "
            "the identity path only adds channels",
            attribute,
        )


@attrs.define
class ResNetConfig:
    """The residual network shared by the DRSN and its plain (no-shrinkage) counterpart."""

    stem_channels: int | None = attrs.field(
        default=None, validator=v.optional(v.ge(1))
    )  #: None = widths[0]
    stem_stride: int = attrs.field(default=2, validator=v.ge(1))  #: as the paper
    widths: tuple[int, ...] = attrs.field(
        default=(32, 64, 128), converter=tuple, validator=_check_widths
    )
    units_per_stage: int = attrs.field(default=2, validator=v.ge(1))  #: paper: 4
    freq_stride: int = attrs.field(default=2, validator=v.ge(1))  #: first unit of each stage
    time_stride: int = attrs.field(default=2, validator=v.ge(1))  #: first unit of each stage
    freq_pooling: Literal["mean", "attention", "flatten"] = attrs.field(
        default="mean", validator=v.in_(("mean", "attention", "flatten"))
    )
    dropout: float = attrs.field(default=0.1, validator=[v.ge(0.0), v.lt(1.0)])
    out_dim: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))  #: projection


@attrs.define
class DRSNConfig(ResNetConfig):
    shrinkage: Shrinkage = attrs.field(
        default="channel-wise", validator=v.in_(("channel-wise", "channel-shared", "off"))
    )


def soft_threshold(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """sign(x) · max(|x| − τ, 0): values inside ±τ become 0, the rest move τ towards 0."""
    return torch.sign(x) * F.relu(x.abs() - tau)


def _grid(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Mask [B, T] as a float [B, 1, 1, T] that broadcasts over maps [B, C, F, T]."""
    return mask[:, None, None, :].to(like.dtype)


class Shrinkage2d(nn.Module):
    """The threshold sub-network and soft thresholding of one residual unit."""

    def __init__(self, channels: int, shared: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm1d(channels)
        self.fc2 = nn.Linear(channels, 1 if shared else channels)
        self.shared = shared

    def thresholds(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """τ ≥ 0 per sample and channel, [B, C, 1, 1] (one value repeated if shared)."""
        level = masked_mean(x.abs().mean(dim=2).transpose(1, 2), mask)  # mean |x| → [B, C]
        z = self.fc1(level)
        # BatchNorm needs two samples to estimate batch statistics: a lone sample in
        # training (the last, odd batch) uses the running ones instead of failing.
        use_batch = self.training and z.shape[0] > 1
        z = F.batch_norm(
            z, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
            training=use_batch, momentum=self.bn.momentum, eps=self.bn.eps,
        )  # fmt: skip
        alpha = torch.sigmoid(self.fc2(F.relu(z)))
        if self.shared:
            level = level.mean(dim=1, keepdim=True)
        tau = (alpha * level).expand(-1, x.shape[1])
        return tau[:, :, None, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return soft_threshold(x, self.thresholds(x, mask))


class ResidualUnit(nn.Module):
    """RSBU (or a plain pre-activation unit when ``shrinkage == "off"``)."""

    def __init__(
        self, c_in: int, c_out: int, stride: tuple[int, int], shrinkage: Shrinkage
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shrink = (
            None if shrinkage == "off" else Shrinkage2d(c_out, shared=shrinkage == "channel-shared")
        )
        self.stride = stride
        self.extra_channels = c_out - c_in

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, F, T] with mask [B, T] → the same at the unit's stride."""
        out_mask = stride_mask(mask, self.stride[1])
        r = self.conv1(F.relu(self.bn1(x)) * _grid(mask, x))
        r = self.conv2(F.relu(self.bn2(r)) * _grid(out_mask, r))
        if self.shrink is not None:
            r = self.shrink(r, out_mask)
        identity = x
        if self.stride != (1, 1):
            # Mean over the valid steps of each window, so a window that straddles the
            # end of a clip averages the same values padded or not.
            identity = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
            valid = F.avg_pool2d(
                _grid(mask, x), (1, self.stride[1]), (1, self.stride[1]), ceil_mode=True
            )
            identity = identity / valid.clamp_min(1e-6)
        if self.extra_channels > 0:
            identity = F.pad(identity, (0, 0, 0, 0, 0, self.extra_channels))
        return (r + identity) * _grid(out_mask, r), out_mask


class DRSN(nn.Module):
    """Spectrogram [B, F, T] + mask [B, T] → :class:`Tokens` [B, T', out_dim]."""

    def __init__(
        self, config: ResNetConfig, *, in_features: int, shrinkage: Shrinkage | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.in_features = in_features
        self.shrinkage = shrinkage or getattr(config, "shrinkage", "off")
        c = config
        channels = c.stem_channels or c.widths[0]
        self.stem = nn.Conv2d(1, channels, 3, stride=c.stem_stride, padding=1, bias=False)
        units: list[ResidualUnit] = []
        for width in c.widths:
            for i in range(c.units_per_stage):
                stride = (c.freq_stride, c.time_stride) if i == 0 else (1, 1)
                units.append(ResidualUnit(channels, width, stride, self.shrinkage))
                channels = width
        self.units = nn.ModuleList(units)
        self.bn_out = nn.BatchNorm2d(channels)
        self.freq_attention = nn.Conv2d(channels, 1, 1) if c.freq_pooling == "attention" else None
        token_dim = channels
        if c.freq_pooling == "flatten":
            token_dim *= self.output_bins(in_features)
        self.dropout = nn.Dropout(c.dropout)
        self.proj = nn.Linear(token_dim, c.out_dim) if c.out_dim else None
        self.out_dim = c.out_dim or token_dim
        #: input frames per output token
        self.time_reduction = c.stem_stride * c.time_stride ** len(c.widths)

    def output_bins(self, in_features: int) -> int:
        """Frequency bins left after the stem and every stage (stride s: ⌈F / s⌉)."""
        bins = math.ceil(in_features / self.config.stem_stride)
        for _ in self.config.widths:
            bins = math.ceil(bins / self.config.freq_stride)
        return bins

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> Tokens:
        if x.dim() != 3:
            raise ValueError(f"DRSN expects features [B, F, T], got {tuple(x.shape)}")
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"DRSN was built for {self.in_features} feature rows, got {x.shape[1]}"
            )
        if mask is None:
            mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool, device=x.device)
        h = x.unsqueeze(1) * _grid(mask, x)
        m = stride_mask(mask, self.config.stem_stride)
        h = self.stem(h) * _grid(m, h)
        for unit in self.units:
            h, m = unit(h, m)
        h = F.relu(self.bn_out(h))  # [B, C, F', T']
        if self.config.freq_pooling == "flatten":
            pooled = h.flatten(1, 2)  # [B, C·F', T'], the bins of channel 0 first
        elif self.freq_attention is None:
            pooled = h.mean(dim=2)
        else:
            weights = torch.softmax(self.freq_attention(h), dim=2)  # over frequency
            pooled = (h * weights).sum(dim=2)
        tokens = self.dropout(pooled.transpose(1, 2))  # [B, T', C]
        if self.proj is not None:
            tokens = self.proj(tokens)
        return Tokens(zero_padding(tokens, m), m)


def plain_resnet(config: ResNetConfig, *, in_features: int) -> DRSN:
    """The "w/o DRSN" ablation: the same network, no soft thresholding."""
    return DRSN(config, in_features=in_features, shrinkage="off")


@hookimpl
def register_audio_encoders(register):
    register.audio_encoder(
        "drsn",
        DRSN,
        config=DRSNConfig,
        description="deep residual shrinkage network over (freq, time) → time tokens (paper §3.2)",
    )
    register.audio_encoder(
        "resnet-plain",
        plain_resnet,
        config=ResNetConfig,
        description="the DRSN without soft thresholding (the 'w/o DRSN' ablation)",
    )
