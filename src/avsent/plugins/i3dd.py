"""Video encoders "i3dd" (3D-DenseNet with SPD-Conv, the paper's) and "densenet3d" (plain).

The 3D-DenseNet follows the common DenseNet-121 video layout: a stem (conv + pooling), dense
blocks of BN-ReLU-Conv1³-BN-ReLU-Conv3³ layers whose outputs are concatenated, and
transitions (BN-ReLU-Conv1³ that compresses channels, then 2× downsampling). In I3DD every
downsampling, i.e. the stem's stride-2 conv, its max-pool and each transition's avg-pool,
becomes SPD-Conv: space-to-depth, then a non-strided conv. "densenet3d" keeps the strided
conv and the pooling; it is the "w/o I3DD" ablation. Each downsampling halves H and W (and
T when ``downsample_time``); the output is one token per remaining time step, pooled over
space, with the mask shortened to match.

Presets (:data:`PRESETS`): ``densenet121-3d`` (the defaults: the common DenseNet-121 video
layout) and ``small`` (trains on a CPU). Paper silent: the paper gives no I3DD sizes; the
DenseNet-121 layout was chosen because it is the 3D-DenseNet of common video code. A recipe
picks the small one by setting those fields.

SPD-Conv: the paper's text says it captures "the symmetric positive definite structure"
of the data, but the module it cites and describes (replacing strided convolution and
pooling for low-resolution inputs) is Sunkara & Luo's space-to-depth convolution, which is
what is built here; nothing in it involves SPD matrices.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from attrs import validators as v
from torch import nn

from avsent.contracts import Tokens
from avsent.errors import ConfigError
from avsent.hookspecs import hookimpl
from avsent.layers.masks import downsample_mask
from avsent.layers.pointwise import PointwiseConv3d
from avsent.layers.spd_conv import SPDConv

#: field values of the two presets (``densenet121-3d`` = the config defaults)
PRESETS: dict[str, dict[str, object]] = {
    "densenet121-3d": {
        "growth_rate": 32,
        "block_config": (6, 12, 24, 16),
        "num_init_features": 64,
        "bn_size": 4,
        "compression": 0.5,
    },
    "small": {
        "growth_rate": 12,
        "block_config": (2, 4, 4),
        "num_init_features": 24,
        "bn_size": 4,
        "compression": 0.5,
    },
}


def _positive_ints(instance, attribute, value) -> None:
    if not value or any(not isinstance(n, int) or n < 1 for n in value):
        raise ValueError(
            f"{attribute.name} must be a non-empty list of positive integers, got {value!r}"
        )


@attrs.define
class DenseNet3DConfig:
    """Shape of the network. Defaults = the paper-size preset; see :data:`PRESETS`."""

    growth_rate: int = attrs.field(default=32, validator=v.ge(1))
    block_config: tuple[int, ...] = attrs.field(
        default=(6, 12, 24, 16), converter=tuple, validator=_positive_ints
    )
    num_init_features: int = attrs.field(default=64, validator=v.ge(1))
    bn_size: int = attrs.field(default=4, validator=v.ge(1))
    compression: float = attrs.field(default=0.5, validator=[v.gt(0.0), v.le(1.0)])
    dropout: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])
    #: also halve the time axis at each downsampling (SPD over T, H, W: 8× channels)
    downsample_time: bool = False
    stem_kernel: int = attrs.field(default=7, validator=v.ge(1))


Downsampling = Literal["spd", "strided"]


@attrs.define
class I3DDConfig(DenseNet3DConfig):
    """As :class:`DenseNet3DConfig`; the stem conv runs after space-to-depth, so it is smaller.

    ``downsampling = "strided"`` is the "w/o I3DD" ablation: the same network with each
    SPD-Conv replaced by its strided counterpart (a stride-2 conv with the same kernel and
    widths), and nothing else changed."""

    stem_kernel: int = attrs.field(default=3, validator=v.ge(1))
    downsampling: Downsampling = attrs.field(default="spd", validator=v.in_(("spd", "strided")))


class _DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int, bn_size: int, dropout: float) -> None:
        super().__init__()
        inner = bn_size * growth
        self.body = nn.Sequential(
            nn.BatchNorm3d(in_channels),
            nn.ReLU(inplace=True),
            PointwiseConv3d(in_channels, inner),
            nn.BatchNorm3d(inner),
            nn.ReLU(inplace=True),
            nn.Conv3d(inner, growth, 3, padding=1, bias=False),
            nn.Dropout3d(dropout) if dropout > 0 else nn.Identity(),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([x, _run_masked(self.body, x, mask)], dim=1)


def _run_masked(layers: nn.Sequential, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``layers`` applied in turn with padded frames zeroed after each one, so what the
    next temporal convolution reads at a padded frame is always zero: a clip's tokens are
    the same alone or padded in a batch (BatchNorm's shift would otherwise re-fill them).
    ``mask`` None: no frame is padded, nothing to zero (see :func:`_padding`)."""
    for layer in layers:
        x = layer(x, mask) if isinstance(layer, _DenseLayer) else layer(x)
        if mask is not None:
            keep = downsample_mask(mask, x.shape[2]) if x.shape[2] != mask.shape[1] else mask
            x = x * keep[:, None, :, None, None].to(x.dtype)
    return x


def _padding(mask: torch.Tensor) -> torch.Tensor | None:
    """``mask``, or None when every frame is real: multiplying by an all-ones mask changes
    no value but costs a pass over every activation (15-25 % of a mavsa-di CPU training
    step). A traced, exported or compiled graph keeps the mask, since there the check
    would freeze one batch's answer into the graph."""
    compiler = torch.compiler
    tracing = torch.jit.is_tracing() or compiler.is_compiling() or compiler.is_exporting()
    return mask if tracing or not bool(mask.all()) else None


class DenseNet3D(nn.Module):
    """Frames [B, C, T, H, W] + mask [B, T] → Tokens [B, T', D]."""

    def __init__(
        self,
        config: DenseNet3DConfig,
        *,
        in_channels: int = 3,
        frames: int = 16,
        size: int = 64,
        downsampling: Downsampling | None = None,
    ) -> None:
        """``downsampling`` None is the classic 3D-DenseNet (strided stem conv, max-pool,
        average-pooling transitions); "spd" / "strided" the I3DD layout (see I3DDConfig)."""
        super().__init__()
        self.config = config
        self.downsampling = downsampling
        self.steps = 2 + len(config.block_config) - 1  # stem conv, stem pool, transitions
        self.factor = 2**self.steps
        self.check_input(frames, size, size, field="faces")
        t_stride = 2 if config.downsample_time else 1
        k = config.stem_kernel
        width = config.num_init_features
        time = config.downsample_time
        if downsampling is not None:
            stem = [
                _downsampler(in_channels, width, k, downsampling, time),
                nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
                _downsampler(width, width, 3, downsampling, time),
            ]
        else:
            stem = [
                nn.Conv3d(
                    in_channels, width, k, stride=(t_stride, 2, 2), padding=k // 2, bias=False
                ),
                nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(3, stride=(t_stride, 2, 2), padding=1),
            ]
        layers: list[nn.Module] = list(stem)
        channels = width
        for i, n_layers in enumerate(config.block_config):
            for _ in range(n_layers):
                layers.append(
                    _DenseLayer(channels, config.growth_rate, config.bn_size, config.dropout)
                )
                channels += config.growth_rate
            if i < len(config.block_config) - 1:
                out = max(1, int(channels * config.compression))
                layers += [nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]
                if downsampling is not None:
                    layers.append(_downsampler(channels, out, 1, downsampling, time))
                else:
                    layers += [
                        PointwiseConv3d(channels, out),
                        nn.AvgPool3d((t_stride, 2, 2)),
                    ]
                channels = out
        layers += [nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_dim = channels

    def check_input(self, frames: int, height: int, width: int, *, field: str = "video") -> None:
        """Sides must survive every halving exactly; say which and by what otherwise."""
        f = self.factor
        bad = [f"{name}={n}" for name, n in (("H", height), ("W", width)) if n % f]
        if self.config.downsample_time and frames % f:
            bad.insert(0, f"T={frames}")
        if bad:
            kind = "3D-DenseNet" if self.downsampling is None else "I3DD"
            what = "T, H and W" if self.config.downsample_time else "H and W"
            raise ConfigError(
                field,
                f"{kind} downsamples {self.steps} times (×{f}), so {what} must be divisible "
                f"by {f}; got {', '.join(bad)} (change faces.crop_size / faces.num_frames or "
                f"block_config)",
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        if x.dim() != 5:
            raise ValueError(f"expected frames [B, C, T, H, W], got shape {tuple(x.shape)}")
        self.check_input(*x.shape[2:])
        padding = _padding(mask)
        if padding is not None:  # padded frames carry nothing
            x = x * padding[:, None, :, None, None].to(x.dtype)
        y = _run_masked(self.features, x, padding).mean(dim=(3, 4))  # pool space → [B, D, T']
        tokens = y.transpose(1, 2)
        return Tokens(tokens, downsample_mask(mask, tokens.shape[1]))


def _downsampler(cin: int, cout: int, kernel: int, how: Downsampling, time: bool) -> nn.Module:
    """SPD-Conv, or its strided counterpart: the same kernel and widths, stride 2."""
    if how == "spd":
        return SPDConv(cin, cout, kernel, time=time)
    stride = (2 if time else 1, 2, 2)
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


def build_i3dd(config: I3DDConfig, *, in_channels: int, frames: int, size: int) -> DenseNet3D:
    return DenseNet3D(
        config, in_channels=in_channels, frames=frames, size=size, downsampling=config.downsampling
    )


def build_densenet3d(
    config: DenseNet3DConfig, *, in_channels: int, frames: int, size: int
) -> DenseNet3D:
    return DenseNet3D(config, in_channels=in_channels, frames=frames, size=size)


@hookimpl
def register_video_encoders(register):
    register.video_encoder(
        "i3dd",
        build_i3dd,
        config=I3DDConfig,
        description="3D-DenseNet with SPD-Conv instead of strided conv and pooling (paper)",
    )
    register.video_encoder(
        "densenet3d",
        build_densenet3d,
        config=DenseNet3DConfig,
        description="plain 3D-DenseNet, strided conv + pooling (the 'w/o I3DD' ablation)",
    )
