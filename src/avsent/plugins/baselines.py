"""The paper's Table 4 baselines, as parts and recipes (choices documented in docs/baselines.md).

* ``rnn`` — Zaremba et al. 2014: a multi-layer LSTM with dropout on the non-recurrent
  connections, over the audio feature frames (audio encoder ``lstm``).
* ``densenet3d`` — the plain 3D-DenseNet over face crops (video encoder from the i3dd plugin).
* ``vcan`` — Chen et al., TCSVT 2022: an audio features map module (the features and their
  time derivatives as a multi-channel map for a 2-D CNN: ``vcan-afm``), a per-frame image
  CNN (``vcan-frames``), a cross-modal selection module that keeps the video frames the
  audio points to (``vcan-select``) and a classifier group (``classifier-group``).
* ``cmavf-ad`` — Mocanu et al., IVC 2023: a 3-D CNN with channel, spatial and temporal
  attention for video (``cmavf-3dcnn``), a 2-D CNN with temporal attention for audio
  (``cmavf-2dcnn``), cross-modal attention fusion (``cma``) and a head that adds a deep
  metric-learning loss (``metric``).

No public code exists for VCAN or CMAVF-AD; these follow their papers' published descriptions.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import attrs
import torch
from attrs import validators as v
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from avsent.contracts import Tokens
from avsent.errors import ConfigError
from avsent.hookspecs import hookimpl
from avsent.layers.masks import downsample_mask, masked_softmax, zero_padded_steps, zero_padding
from avsent.recipe import Recipe

_unit = [v.ge(0.0), v.lt(1.0)]
_widths = [v.min_len(1), v.deep_iterable(v.ge(1), v.instance_of(tuple))]


# -- rnn (Zaremba et al. 2014) --------------------------------------------------------------


@attrs.define
class LSTMConfig:
    hidden: int = attrs.field(default=256, validator=v.ge(1))
    layers: int = attrs.field(default=2, validator=v.ge(1))
    dropout: float = attrs.field(default=0.5, validator=_unit)  #: non-recurrent connections
    bidirectional: bool = False
    readout: Literal["last", "all"] = "last"  #: last real step only, or every step


class LSTMEncoder(nn.Module):
    """Multi-layer LSTM over feature frames; padding is packed away, never read."""

    def __init__(self, config: LSTMConfig, *, in_features: int) -> None:
        super().__init__()
        self.config = config
        self.input_drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            in_features,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        self.output_drop = nn.Dropout(config.dropout)
        self.directions = 2 if config.bidirectional else 1
        self.out_dim = config.hidden * self.directions

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        batch, _, steps = x.shape
        lengths = mask.sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(
            self.input_drop(x.transpose(1, 2)), lengths, batch_first=True, enforce_sorted=False
        )
        out, (h, _) = self.lstm(packed)
        if self.config.readout == "last":
            last = h[-self.directions :].transpose(0, 1).reshape(batch, self.out_dim)
            real = mask.any(dim=1, keepdim=True)  # a clip with no real step has no token
            return Tokens(zero_padding(self.output_drop(last).unsqueeze(1), real), real)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        return Tokens(self.output_drop(out) * mask.unsqueeze(-1), mask)


# -- shared CNN pieces -----------------------------------------------------------------------


def _conv2d_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def _conv2d_stack(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    widths = (in_channels, *channels)
    return nn.Sequential(*(_conv2d_block(a, b) for a, b in itertools.pairwise(widths)))


def _check_size(size: int, stages: int, field: str) -> None:
    if size < 2**stages:
        raise ConfigError(
            field, f"{stages} pooling stages need inputs of at least {2**stages} steps, got {size}"
        )


class TemporalAttention(nn.Module):
    """Scores each real step, softmax over time, and scales the tokens by weight × #real steps,
    so the masked mean downstream equals the attention-weighted sum."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, tokens: Tokens) -> Tokens:
        weights = masked_softmax(self.score(tokens.x).squeeze(-1), tokens.mask)
        real = tokens.mask.sum(dim=1, keepdim=True).clamp_min(1).to(weights.dtype)
        return Tokens(tokens.x * (weights * real).unsqueeze(-1), tokens.mask)


# -- CMAVF-AD (Mocanu et al. 2023) ------------------------------------------------------------


@attrs.define
class CMAVFAudioConfig:
    channels: tuple[int, ...] = attrs.field(default=(32, 64, 128), validator=_widths)
    temporal_attention: bool = True


class CMAVFAudioEncoder(nn.Module):
    """2-D CNN over the feature map (frequency × time), then temporal attention."""

    def __init__(self, config: CMAVFAudioConfig, *, in_features: int) -> None:
        super().__init__()
        _check_size(in_features, len(config.channels), "audio.channels")
        self.cnn = _conv2d_stack(1, config.channels)
        self.out_dim = config.channels[-1]
        self.attention = TemporalAttention(self.out_dim) if config.temporal_attention else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        maps = self.cnn(zero_padded_steps(x, mask).unsqueeze(1))  # [B, C, F', T']
        tokens = Tokens(maps.mean(dim=2).transpose(1, 2), downsample_mask(mask, maps.shape[-1]))
        return self.attention(tokens) if self.attention is not None else tokens


class ChannelAttention(nn.Module):
    """CBAM-style: average- and max-pooled descriptors → shared MLP → sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        gate = torch.sigmoid(self.mlp(flat.mean(-1)) + self.mlp(flat.amax(-1)))
        return x * gate.view(*gate.shape, *([1] * (x.dim() - 2)))


class SpatialAttention(nn.Module):
    """CBAM-style per frame: channel mean and max → k×k conv → sigmoid gate per pixel."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, (1, kernel, kernel), padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


@attrs.define
class CMAVFVideoConfig:
    channels: tuple[int, ...] = attrs.field(default=(32, 64, 128, 256), validator=_widths)
    reduction: int = attrs.field(default=8, validator=v.ge(1))  #: channel-attention MLP
    spatial_kernel: int = attrs.field(default=7, validator=v.ge(1))
    temporal_attention: bool = True


class CMAVFVideoEncoder(nn.Module):
    """3-D CNN; each stage conv → channel attention → spatial attention → 2×2 spatial pool.
    Time keeps its resolution (one token per frame), then temporal attention."""

    def __init__(
        self, config: CMAVFVideoConfig, *, in_channels: int, frames: int, size: int
    ) -> None:
        super().__init__()
        _check_size(size, len(config.channels), "video.channels")
        widths = (in_channels, *config.channels)
        stages = []
        for cin, cout in itertools.pairwise(widths):
            stages += [
                nn.Conv3d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
                ChannelAttention(cout, config.reduction),
                SpatialAttention(config.spatial_kernel),
                nn.MaxPool3d((1, 2, 2)),
            ]
        self.cnn = nn.Sequential(*stages)
        self.out_dim = config.channels[-1]
        self.attention = TemporalAttention(self.out_dim) if config.temporal_attention else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        maps = self.cnn(zero_padded_steps(x, mask))  # [B, C, T, H', W']
        tokens = Tokens(maps.mean(dim=(3, 4)).transpose(1, 2), mask)
        return self.attention(tokens) if self.attention is not None else tokens


@attrs.define
class MetricHeadConfig:
    """FC head plus a deep-metric-learning term the trainer adds to the cross-entropy."""

    dropout: float = attrs.field(default=0.2, validator=_unit)
    loss: Literal["triplet", "center"] = "triplet"
    weight: float = attrs.field(default=0.1, validator=v.ge(0.0))
    margin: float = attrs.field(default=0.3, validator=v.ge(0.0))  #: triplet margin


class MetricHead(nn.Module):
    """Dropout → FC → logits; ``extra_loss`` pulls same-class embeddings together and pushes
    other classes apart (batch-hard triplet on unit vectors, or centre loss)."""

    def __init__(self, config: MetricHeadConfig, *, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(in_dim, num_classes)
        self.centers = (
            nn.Parameter(torch.randn(num_classes, in_dim) * 0.1)
            if config.loss == "center"
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))

    def extra_loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.centers is not None:
            pulled = (features - self.centers[targets]).pow(2).sum(dim=1)
            return self.config.weight * 0.5 * pulled.mean()
        return self.config.weight * batch_hard_triplet(features, targets, self.config.margin)


def batch_hard_triplet(
    features: torch.Tensor, targets: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean over anchors of relu(hardest positive − hardest negative + margin), on unit
    vectors; anchors without a positive or a negative in the batch are left out."""
    z = F.normalize(features, dim=1)
    dist = torch.cdist(z, z)
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=features.device)
    positive = same & ~eye
    usable = positive.any(1) & (~same).any(1)
    if not usable.any():
        return features.sum() * 0.0
    hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[usable].mean()


# -- VCAN (Chen et al. 2022) ------------------------------------------------------------------


@attrs.define
class VCANAudioConfig:
    """Audio features map module: which maps are stacked as channels, and the 2-D CNN."""

    maps: tuple[Literal["static", "delta", "delta2"], ...] = attrs.field(
        default=("static", "delta", "delta2")
    )
    channels: tuple[int, ...] = attrs.field(default=(32, 64, 128), validator=_widths)

    @maps.validator
    def _check_maps(self, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"maps must be distinct and non-empty, got {value!r}")


def _delta(x: torch.Tensor) -> torch.Tensor:
    """Centred first difference along time (edges repeated), x [B, F, T]."""
    padded = F.pad(x, (1, 1), mode="replicate")
    return (padded[..., 2:] - padded[..., :-2]) / 2


class VCANAudioEncoder(nn.Module):
    """Features, their deltas and delta-deltas as a multi-channel map → 2-D CNN → one token
    per pooled time step."""

    def __init__(self, config: VCANAudioConfig, *, in_features: int) -> None:
        super().__init__()
        _check_size(in_features, len(config.channels), "audio.channels")
        self.maps = config.maps
        self.cnn = _conv2d_stack(len(config.maps), config.channels)
        self.out_dim = config.channels[-1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        static = zero_padded_steps(x, mask)
        delta = zero_padded_steps(_delta(static), mask)
        available = {
            "static": static,
            "delta": delta,
            "delta2": zero_padded_steps(_delta(delta), mask),
        }
        maps = self.cnn(torch.stack([available[name] for name in self.maps], dim=1))
        return Tokens(maps.mean(dim=2).transpose(1, 2), downsample_mask(mask, maps.shape[-1]))


@attrs.define
class FrameCNNConfig:
    channels: tuple[int, ...] = attrs.field(default=(32, 64, 128), validator=_widths)


class FrameCNN(nn.Module):
    """One shared 2-D image CNN applied to every frame → one token per frame."""

    def __init__(self, config: FrameCNNConfig, *, in_channels: int, frames: int, size: int):
        super().__init__()
        _check_size(size, len(config.channels), "video.channels")
        self.cnn = _conv2d_stack(in_channels, config.channels)
        self.out_dim = config.channels[-1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        b, c, t, h, w = x.shape
        frames = zero_padded_steps(x, mask).transpose(1, 2).reshape(b * t, c, h, w)
        feats = self.cnn(frames).mean(dim=(2, 3)).view(b, t, self.out_dim)
        return Tokens(feats * mask.unsqueeze(-1), mask)


@attrs.define
class VCANSelectConfig:
    d_model: int = attrs.field(default=128, validator=v.ge(1))
    keep: float = attrs.field(default=0.5, validator=[v.gt(0.0), v.le(1.0)])  #: frames kept


class CrossModalSelection(nn.Module):
    """The audio summary scores every real frame; the top ``keep`` fraction (at least one)
    is kept and pooled by softmax of those scores; output = [audio, selected video]."""

    def __init__(
        self, config: VCANSelectConfig, *, audio_dim: int | None, video_dim: int | None
    ) -> None:
        super().__init__()
        if audio_dim is None or video_dim is None:
            raise ConfigError("fusion", "'vcan-select' needs both audio and video")
        self.keep = config.keep
        self.audio_proj = nn.Linear(audio_dim, config.d_model)
        self.video_proj = nn.Linear(video_dim, config.d_model)
        self.out_dim = 2 * config.d_model

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        if audio is None or video is None:
            raise ConfigError("fusion", "'vcan-select' got a batch without audio or video")
        a = self.audio_proj(audio.mean())  # [B, D]
        frames = self.video_proj(video.x)  # [B, T, D]
        scores = (frames @ a.unsqueeze(-1)).squeeze(-1) / math.sqrt(a.shape[-1])
        real = video.mask.sum(dim=1, keepdim=True)
        keep_n = torch.ceil(real.to(scores.dtype) * self.keep).clamp_min(1)
        ranked = scores.masked_fill(~video.mask, float("-inf"))
        rank = ranked.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = best frame
        kept = video.mask & (rank < keep_n)
        weights = masked_softmax(scores, kept)
        selected = (weights.unsqueeze(-1) * frames).sum(dim=1)
        return torch.cat([a, selected], dim=-1)


@attrs.define
class ClassifierGroupConfig:
    members: int = attrs.field(default=3, validator=v.ge(1))
    hidden: int = attrs.field(default=128, validator=v.ge(1))
    dropout: float = attrs.field(default=0.3, validator=_unit)


class ClassifierGroup(nn.Module):
    """Several independent classifiers on the fused vector; their logits are averaged."""

    def __init__(self, config: ClassifierGroupConfig, *, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(in_dim, config.hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, num_classes),
            )
            for _ in range(config.members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


# -- registration -------------------------------------------------------------------------------

_NO_INTRA = {"audio_intra": {"name": "identity"}, "video_intra": {"name": "identity"}}

RECIPES: dict[str, Recipe] = {
    "rnn": Recipe(
        "RNN baseline (audio): multi-layer LSTM with dropout over the audio features",
        {
            "audio": {"name": "lstm"},
            "video": {"name": "none"},
            **_NO_INTRA,
            "fusion": {"name": "passthrough"},
            "head": {"name": "linear"},
        },
        reference="Table 4: RNN (Zaremba et al. 2014)",
    ),
    "densenet3d": Recipe(
        "3D-DenseNet baseline (visual): plain 3D-DenseNet over face crops",
        {
            "audio": {"name": "none"},
            "video": {"name": "densenet3d"},
            **_NO_INTRA,
            "fusion": {"name": "passthrough"},
            "head": {"name": "linear"},
        },
        reference="Table 4: 3D-DenseNet",
    ),
    "vcan": Recipe(
        "VCAN baseline: audio features maps, audio-guided frame selection, classifier group",
        {
            "audio": {"name": "vcan-afm"},
            "video": {"name": "vcan-frames"},
            **_NO_INTRA,
            "fusion": {"name": "vcan-select"},
            "head": {"name": "classifier-group"},
        },
        reference="Table 4: VCAN (Chen et al., IEEE TCSVT 32(12), 2022)",
    ),
    "cmavf-ad": Recipe(
        "CMAVF-AD baseline: attention 3D-CNN + 2D-CNN, cross-modal attention, metric loss",
        {
            "audio": {"name": "cmavf-2dcnn"},
            "video": {"name": "cmavf-3dcnn"},
            **_NO_INTRA,
            "fusion": {"name": "cma-mult", "layers": 1},
            "head": {"name": "metric"},
        },
        reference="Table 4: CMAVF-AD (Mocanu et al., Image and Vision Computing 133, 2023)",
    ),
}


@hookimpl
def register_audio_encoders(register):
    register.audio_encoder(
        "lstm", LSTMEncoder, config=LSTMConfig, description="multi-layer LSTM (rnn baseline)"
    )
    register.audio_encoder(
        "cmavf-2dcnn",
        CMAVFAudioEncoder,
        config=CMAVFAudioConfig,
        description="2-D CNN + temporal attention (CMAVF-AD audio)",
    )
    register.audio_encoder(
        "vcan-afm",
        VCANAudioEncoder,
        config=VCANAudioConfig,
        description="audio features map module: features + deltas → 2-D CNN (VCAN)",
    )


@hookimpl
def register_video_encoders(register):
    register.video_encoder(
        "cmavf-3dcnn",
        CMAVFVideoEncoder,
        config=CMAVFVideoConfig,
        description="3-D CNN + channel, spatial, temporal attention (CMAVF-AD video)",
    )
    register.video_encoder(
        "vcan-frames",
        FrameCNN,
        config=FrameCNNConfig,
        description="shared 2-D image CNN per frame (VCAN video)",
    )


@hookimpl
def register_fusions(register):
    register.fusion(
        "vcan-select",
        CrossModalSelection,
        config=VCANSelectConfig,
        description="audio-guided selection of key frames (VCAN cross-modal selection)",
    )


@hookimpl
def register_heads(register):
    register.head(
        "metric",
        MetricHead,
        config=MetricHeadConfig,
        description="FC + deep metric-learning loss (CMAVF-AD)",
    )
    register.head(
        "classifier-group",
        ClassifierGroup,
        config=ClassifierGroupConfig,
        description="several classifiers, logits averaged (VCAN)",
    )


@hookimpl
def register_recipes(register):
    for name, recipe in RECIPES.items():
        register.recipe(name, recipe, description=recipe.description)
