"""Video encoder "timm-frames": any timm 2-D backbone applied to each frame, tokens over time.

It shows that the video slot is swappable: a per-frame image network (ResNet, ConvNeXt,
EfficientNet, ...) gives one feature vector per frame; those are the tokens, optionally
averaged over ``temporal_stride`` frames. Weights are random unless ``pretrained`` (or a
``weights_file``: a timm checkpoint, safetensors preferred); then they come from that file
or the local Hugging Face cache, and are downloaded only when ``download`` is set and
``HF_HUB_OFFLINE`` is not, so an offline machine fails at once with a clear message
instead of retrying the network. A pretrained backbone is fine-tuned at ``train.lr ×
lr_scale``, or ``frozen`` (its BatchNorm statistics too).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import attrs
import torch
from attrs import validators as v
from torch import nn

from avsent.contracts import Tokens
from avsent.errors import ConfigError, WeightsUnavailableError
from avsent.hookspecs import hookimpl
from avsent.layers.masks import downsample_mask


@attrs.define
class TimmFramesConfig:
    model: str = "resnet18"  #: any name from ``timm.list_models()``
    pretrained: bool = False
    #: a local checkpoint (.safetensors, or a timm .pth/.bin); implies ``pretrained``
    weights_file: str | None = None
    download: bool = False  #: let timm fetch missing pretrained weights from the internet
    frozen: bool = False  #: keep the backbone fixed (no gradients, BatchNorm in eval mode)
    #: the backbone's learning rate as a multiple of train.lr (the trainer's lr_scale)
    lr_scale: float = attrs.field(default=1.0, validator=v.gt(0.0))
    temporal_stride: int = attrs.field(default=1, validator=v.ge(1))  #: frames per token
    drop_rate: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])


class TimmFrames(nn.Module):
    """Frames [B, C, T, H, W] + mask [B, T] → Tokens [B, T / stride, D]."""

    def __init__(
        self, config: TimmFramesConfig, *, in_channels: int, frames: int, size: int
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = _create(config, in_channels)
        self.backbone.lr_scale = config.lr_scale
        if config.frozen:
            self.backbone.requires_grad_(False)
        self.out_dim = int(self.backbone.num_features)

    def train(self, mode: bool = True) -> TimmFrames:
        super().train(mode)
        if self.config.frozen:  # frozen includes the BatchNorm running statistics
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        b, c, t, h, w = x.shape
        per_frame = x.transpose(1, 2).reshape(b * t, c, h, w)
        feats = self.backbone(per_frame).reshape(b, t, -1)
        weight = mask.unsqueeze(-1).to(feats.dtype)
        feats = feats * weight  # padded frames carry nothing
        stride = self.config.temporal_stride
        if stride > 1:  # masked mean over each group of `stride` frames
            feats = _pool(feats, stride) / _pool(weight, stride).clamp_min(1e-6)
        return Tokens(feats, downsample_mask(mask, feats.shape[1]))


def _pool(values: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean over each run of ``stride`` steps of [B, T, D] → [B, ceil(T / stride), D]."""
    pooled = nn.functional.avg_pool1d(values.transpose(1, 2), stride, stride, ceil_mode=True)
    return pooled.transpose(1, 2)


def _create(config: TimmFramesConfig, in_channels: int) -> nn.Module:
    import huggingface_hub.constants
    import timm

    if not timm.is_model(config.model):
        close = timm.list_models(f"*{config.model}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConfigError("video.model", f"timm has no model {config.model!r}{hint}")
    kwargs: dict = {"num_classes": 0, "in_chans": in_channels, "drop_rate": config.drop_rate}
    if not config.pretrained and not config.weights_file:
        return timm.create_model(config.model, pretrained=False, **kwargs)
    if config.weights_file:
        if not Path(config.weights_file).expanduser().is_file():
            raise WeightsUnavailableError(
                f"video.weights_file: {config.weights_file} is not a file on this machine"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(config.weights_file).expanduser())}
    offline = not config.download and not config.weights_file
    cache_only = (
        mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        if offline
        else contextlib.nullcontext()
    )
    try:
        with cache_only:
            return timm.create_model(config.model, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        where = (
            f"the file {config.weights_file}"
            if config.weights_file
            else "the Hugging Face cache (HF_HOME/hub)"
        )
        refused = (
            " and HF_HUB_OFFLINE is set"
            if huggingface_hub.constants.HF_HUB_OFFLINE
            else ("" if config.download else " and downloading is off")
        )
        raise WeightsUnavailableError(
            f"pretrained weights for timm model {config.model!r} are not in {where}"
            f"{refused}. Either run once on a "
            f"machine with internet with video.download=true (or timm.create_model("
            f"{config.model!r}, pretrained=True)) and copy the cache over, set "
            f"video.weights_file to a checkpoint you have, or set video.pretrained=false. "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


@hookimpl
def register_video_encoders(register):
    register.video_encoder(
        "timm-frames",
        TimmFrames,
        config=TimmFramesConfig,
        description="any timm 2-D backbone per frame; one token per frame (or per stride)",
    )
