"""Video encoder "timm-frames": any timm 2-D backbone applied to each frame, tokens over time.

It shows that the video slot is swappable: a per-frame image network (ResNet, ConvNeXt,
EfficientNet, ...) gives one feature vector per frame; those are the tokens, optionally
averaged over ``temporal_stride`` frames. Weights are random unless ``pretrained`` (or a
``weights_file``: a timm checkpoint, safetensors preferred); then they come from that file
or the local Hugging Face cache, and are downloaded only when ``download`` is set and
``HF_HUB_OFFLINE`` is not, so an offline machine fails at once with a clear message
instead of retrying the network. A pretrained backbone is fine-tuned at ``train.lr ×
lr_scale``, or ``frozen`` (its BatchNorm statistics too).

Frozen, the backbone computes the same vectors every epoch, so they can be cached instead,
as ``hf-speech-embeddings`` does for audio: the face embedding ``timm-embeddings``
(``faces.embedding``) runs the backbone once per clip in ``avsent preprocess``, the feature
cache stores its [T, D] vectors under a key holding a hash of the weights
(:meth:`TimmEmbeddings.identity`), and the video encoder ``timm-frames-cached`` turns them
into tokens. Nothing pretrained is then in the model, and training skips the backbone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path
from unittest import mock

import attrs
import numpy as np
import torch
from attrs import validators as v
from torch import nn

from avsent.contracts import Tokens
from avsent.data.normalise import standardise_video, video_to_unit
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
        self.backbone = _create(config, in_channels, field="video")
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
        return _frame_tokens(feats, mask, self.config.temporal_stride)


def _frame_tokens(feats: torch.Tensor, mask: torch.Tensor, stride: int) -> Tokens:
    """Per-frame vectors [B, T, D] → Tokens: padded frames zeroed, and with ``stride`` > 1
    the masked mean over each group of ``stride`` frames."""
    weight = mask.unsqueeze(-1).to(feats.dtype)
    feats = feats * weight  # padded frames carry nothing
    if stride > 1:
        feats = _pool(feats, stride) / _pool(weight, stride).clamp_min(1e-6)
    return Tokens(feats, downsample_mask(mask, feats.shape[1]))


def _pool(values: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean over each run of ``stride`` steps of [B, T, D] → [B, ceil(T / stride), D]."""
    pooled = nn.functional.avg_pool1d(values.transpose(1, 2), stride, stride, ceil_mode=True)
    return pooled.transpose(1, 2)


def _create(config: TimmFramesConfig, in_channels: int, *, field: str) -> nn.Module:
    """The backbone, its weights as ``config`` says; errors name the fields under ``field``."""
    import huggingface_hub.constants
    import timm

    _check_model(config.model, field)
    kwargs: dict = {"num_classes": 0, "in_chans": in_channels, "drop_rate": config.drop_rate}
    if not config.pretrained and not config.weights_file:
        return timm.create_model(config.model, pretrained=False, **kwargs)
    if config.weights_file:
        if not Path(config.weights_file).expanduser().is_file():
            raise WeightsUnavailableError(
                f"{field}.weights_file: {config.weights_file} is not a file on this machine"
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
        fixes = f"or set {field}.weights_file to a checkpoint you have"
        if field == "video":
            fixes = fixes.replace("or set", "set") + ", or set video.pretrained=false"
        raise WeightsUnavailableError(
            f"pretrained weights for timm model {config.model!r} are not in {where}"
            f"{refused}. Either run once on a "
            f"machine with internet with {field}.download=true (or timm.create_model("
            f"{config.model!r}, pretrained=True)) and copy the cache over, {fixes}. "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _check_model(model: str, field: str) -> None:
    import timm

    if not timm.is_model(model):
        close = timm.list_models(f"*{model}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConfigError(f"{field}.model", f"timm has no model {model!r}{hint}")


# -- frozen and cached -----------------------------------------------------------------------


@attrs.define
class EmbeddingsConfig:
    model: str = "resnet18"  #: any name from ``timm.list_models()``
    #: a local checkpoint (.safetensors, or a timm .pth/.bin); None = the Hugging Face cache
    weights_file: str | None = None
    download: bool = False  #: let timm fetch missing pretrained weights from the internet


def _frozen_config(config: EmbeddingsConfig) -> TimmFramesConfig:
    """The frozen, pretrained ``timm-frames`` whose per-frame vectors these are."""
    return TimmFramesConfig(
        model=config.model,
        pretrained=True,
        weights_file=config.weights_file,
        download=config.download,
        frozen=True,
    )


class TimmEmbeddings:
    """Face crops uint8 [T, S, S, C] → float32 [T, D]: a frozen pretrained timm backbone,
    run once per clip in preprocessing on the crops standardised as the model would, so
    the cached vectors are what a frozen ``timm-frames`` computes in every step."""

    def __init__(self, config: EmbeddingsConfig | None = None, *, in_channels: int = 3) -> None:
        self.config = c = config or EmbeddingsConfig()
        backbone = _create(_frozen_config(c), in_channels, field="faces.embedding")
        self.backbone = backbone.eval().requires_grad_(False)
        self.dim = int(self.backbone.num_features)

    @staticmethod
    def describe(config: EmbeddingsConfig | None) -> int:
        """The vectors' width, from the architecture alone (no weights are read)."""
        return _width((config or EmbeddingsConfig()).model)

    @staticmethod
    def identity(config: EmbeddingsConfig | None) -> str:
        """A hash of the weights as loaded: part of the cache key, so vectors computed by
        other weights under the same name (a re-trained file) are never served."""
        c = config or EmbeddingsConfig()
        stamp = None
        if c.weights_file:
            path = Path(c.weights_file).expanduser()
            stat = path.stat() if path.is_file() else None
            stamp = None if stat is None else (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        return _weights_digest(c.model, c.weights_file, c.download, stamp)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or len(crops) == 0:
            raise ValueError(f"expected uint8 crops [T, S, S, C], got {crops.dtype} {crops.shape}")
        frames = standardise_video(video_to_unit(torch.from_numpy(crops)[None]))[0]
        return self.backbone(frames.transpose(0, 1)).float().numpy()  # [T, C, S, S] → [T, D]


@functools.lru_cache(maxsize=16)
def _width(model: str) -> int:
    import timm

    _check_model(model, "faces.embedding")
    return int(timm.create_model(model, pretrained=False, num_classes=0).num_features)


@functools.lru_cache(maxsize=8)
def _weights_digest(
    model: str, weights_file: str | None, download: bool, stamp: tuple | None
) -> str:
    """sha256 over the loaded backbone's tensors (``stamp``: the file's path, size and
    mtime, so an edited file is hashed again)."""
    config = EmbeddingsConfig(model=model, weights_file=weights_file, download=download)
    backbone = _create(_frozen_config(config), 3, field="faces.embedding")
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@attrs.define
class CachedConfig:
    temporal_stride: int = attrs.field(default=1, validator=v.ge(1))  #: frames per token


class TimmFramesCached(nn.Module):
    """Cached face embeddings [B, D, T, 1, 1] (``faces.embedding = timm-embeddings``) →
    Tokens [B, T / stride, D]: the tokens a frozen ``timm-frames`` gives, with nothing
    pretrained to run. A larger map is averaged over its pixels first."""

    def __init__(self, config: CachedConfig, *, in_channels: int, frames: int, size: int) -> None:
        super().__init__()
        self.config = config
        self.out_dim = in_channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        feats = x.mean(dim=(3, 4)).transpose(1, 2)  # [B, T, D]
        return _frame_tokens(feats, mask, self.config.temporal_stride)


@hookimpl
def register_face_embeddings(register):
    register.face_embedding(
        "timm-embeddings",
        TimmEmbeddings,
        config=EmbeddingsConfig,
        description="a frozen pretrained timm backbone's vector per face crop, cached",
    )


@hookimpl
def register_video_encoders(register):
    register.video_encoder(
        "timm-frames",
        TimmFrames,
        config=TimmFramesConfig,
        description="any timm 2-D backbone per frame; one token per frame (or per stride)",
    )
    register.video_encoder(
        "timm-frames-cached",
        TimmFramesCached,
        config=CachedConfig,
        description="tokens from cached timm-embeddings (a frozen timm-frames, precomputed)",
    )
