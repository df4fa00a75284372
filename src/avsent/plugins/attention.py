"""Attention parts of MAVSA-DI (paper §3.4) and the simple fusions its ablations need.

* ``ima`` — intra-modal attention, eqs. 4–7: ``softmax(Q Kᵀ / √d_k) V`` over one modality's
  tokens. ``style = "paper"`` is exactly that attention core (Q, K, V linear maps, multi-head,
  an output map); ``style = "transformer"`` (default) wraps the same core in a pre-LayerNorm
  residual block with a feed-forward layer, which trains more stably and can be stacked.
* ``identity`` — the "w/o IMA" ablation: tokens pass unchanged.
* ``cma`` — cross-modal attention, eq. 8, MulT-style: video queries attend over audio keys and
  values and audio queries over video, each direction a stack of pre-LN blocks; the two
  results are pooled over time (masked) and concatenated (or summed) into F_fusion.
* ``concat`` — the "w/o CMA" ablation: masked means of the present modalities, concatenated.
* ``passthrough`` — unimodal models: the masked mean of the one present modality.

Every part honours the padding masks: keys at padded steps get no attention weight and
padded query steps are zeroed, so the content of padded positions never reaches the output.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
from attrs import validators as v
from torch import nn
from torch.nn import functional as F

from avsent.contracts import Tokens
from avsent.errors import ConfigError
from avsent.hookspecs import hookimpl

_unit = [v.ge(0.0), v.lt(1.0)]


@attrs.define
class IMAConfig:
    """Intra-modal attention. ``d_model = 0`` keeps the encoder's width (no input map)."""

    style: Literal["paper", "transformer"] = "transformer"
    d_model: int = attrs.field(default=0, validator=v.ge(0))
    heads: int = attrs.field(default=4, validator=v.ge(1))
    layers: int = attrs.field(default=1, validator=v.ge(1))
    attn_dropout: float = attrs.field(default=0.1, validator=_unit)
    dropout: float = attrs.field(default=0.1, validator=_unit)  #: residual and FFN dropout
    ffn_mult: int = attrs.field(default=4, validator=v.ge(1))
    positional: bool = False  #: add sinusoidal time positions before attending


@attrs.define
class CMAConfig:
    """Cross-modal attention fusion (MulT defaults: d 30–64, 4–8 heads, attn dropout 0.1)."""

    d_model: int = attrs.field(default=64, validator=v.ge(1))
    heads: int = attrs.field(default=4, validator=v.ge(1))
    layers: int = attrs.field(default=2, validator=v.ge(1))
    attn_dropout: float = attrs.field(default=0.1, validator=_unit)
    dropout: float = attrs.field(default=0.1, validator=_unit)
    ffn_mult: int = attrs.field(default=4, validator=v.ge(1))
    positional: bool = True
    combine: Literal["concat", "sum"] = "concat"


# -- building blocks -----------------------------------------------------------------


def key_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] real-step mask → [B, 1, 1, T] attention mask; an all-padding row attends to all
    (its output is zeroed afterwards) so softmax never sees an empty row."""
    empty = ~mask.any(dim=1, keepdim=True)
    return (mask | empty)[:, None, None, :]


def sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Transformer sinusoidal positions [length, dim]."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    idx = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * idx / dim)
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class MultiHeadAttention(nn.Module):
    """softmax(Q Kᵀ / √d_k) V with linear Q, K, V and output maps; keys masked."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError("heads", f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, query: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor
    ) -> torch.Tensor:
        b, tq, d = query.shape
        ts = source.shape[1]
        h = self.heads
        q = self.q(query).view(b, tq, h, d // h).transpose(1, 2)
        k = self.k(source).view(b, ts, h, d // h).transpose(1, 2)
        val = self.v(source).view(b, ts, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q,
            k,
            val,
            attn_mask=key_mask(source_mask),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


class AttentionBlock(nn.Module):
    """Pre-LN residual block: x + Attn(LN(x), LN(src)); x + FFN(LN(x)).

    A self-attention block (``cross=False``) attends over its own normalised input."""

    def __init__(
        self,
        dim: int,
        heads: int,
        attn_dropout: float,
        dropout: float,
        ffn_mult: int,
        *,
        cross: bool,
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None
        self.attn = MultiHeadAttention(dim, heads, attn_dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim * ffn_mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * ffn_mult, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(x)
        kv = q if self.norm_kv is None else self.norm_kv(src)
        x = x + self.drop(self.attn(q, kv, src_mask))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


def _zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x * mask.unsqueeze(-1).to(x.dtype)


# -- intra-modal -----------------------------------------------------------------------


class IntraModalAttention(nn.Module):
    """IMA (eqs. 4–7) over one modality's tokens; keeps the mask, width ``out_dim``."""

    def __init__(self, config: IMAConfig, *, dim: int) -> None:
        super().__init__()
        self.config = config
        self.out_dim = config.d_model or dim
        self.proj = nn.Linear(dim, self.out_dim) if config.d_model else nn.Identity()
        if config.style == "paper":
            self.layers = nn.ModuleList(
                MultiHeadAttention(self.out_dim, config.heads, config.attn_dropout)
                for _ in range(config.layers)
            )
            self.norm = nn.Identity()
        else:
            self.layers = nn.ModuleList(
                AttentionBlock(
                    self.out_dim,
                    config.heads,
                    config.attn_dropout,
                    config.dropout,
                    config.ffn_mult,
                    cross=False,
                )
                for _ in range(config.layers)
            )
            self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, tokens: Tokens) -> Tokens:
        x = self.proj(tokens.x)
        if self.config.positional:
            x = x + sinusoid(x.shape[1], x.shape[2], x.device)
        for layer in self.layers:
            x = layer(x, x, tokens.mask)
        return Tokens(_zero_padding(self.norm(x), tokens.mask), tokens.mask)


class IdentityIntra(nn.Module):
    """The "w/o IMA" ablation: tokens unchanged."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, tokens: Tokens) -> Tokens:
        return tokens


# -- fusions ---------------------------------------------------------------------------


class CrossModalAttention(nn.Module):
    """CMA (eq. 8): each modality queries the other; masked pooling; concat or sum."""

    def __init__(self, config: CMAConfig, *, audio_dim: int | None, video_dim: int | None):
        super().__init__()
        if audio_dim is None or video_dim is None:
            raise ConfigError(
                "fusion", "'cma' needs both audio and video; use 'passthrough' for one modality"
            )
        self.config = config
        d = config.d_model
        self.audio_in = nn.Linear(audio_dim, d)
        self.video_in = nn.Linear(video_dim, d)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                AttentionBlock(
                    d,
                    config.heads,
                    config.attn_dropout,
                    config.dropout,
                    config.ffn_mult,
                    cross=True,
                )
                for _ in range(config.layers)
            )

        self.video_from_audio = stack()  # queries: video; keys/values: audio
        self.audio_from_video = stack()  # queries: audio; keys/values: video
        self.norm_video = nn.LayerNorm(d)
        self.norm_audio = nn.LayerNorm(d)
        self.out_dim = 2 * d if config.combine == "concat" else d

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        if audio is None or video is None:
            raise ConfigError("fusion", "'cma' got a batch without audio or without video")
        a = self.audio_in(audio.x)
        vv = self.video_in(video.x)
        if self.config.positional:
            a = a + sinusoid(a.shape[1], a.shape[2], a.device)
            vv = vv + sinusoid(vv.shape[1], vv.shape[2], vv.device)
        v_att, a_att = vv, a
        for block in self.video_from_audio:
            v_att = block(v_att, a, audio.mask)
        for block in self.audio_from_video:
            a_att = block(a_att, vv, video.mask)
        v_vec = Tokens(self.norm_video(v_att), video.mask).mean()
        a_vec = Tokens(self.norm_audio(a_att), audio.mask).mean()
        if self.config.combine == "concat":
            return torch.cat([a_vec, v_vec], dim=-1)
        return a_vec + v_vec


class ConcatFusion(nn.Module):
    """The "w/o CMA" ablation: masked mean of each present modality, concatenated."""

    def __init__(self, *, audio_dim: int | None, video_dim: int | None) -> None:
        super().__init__()
        dims = [d for d in (audio_dim, video_dim) if d is not None]
        if not dims:
            raise ConfigError("fusion", "'concat' needs at least one modality")
        self.out_dim = sum(dims)

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        parts = [t.mean() for t in (audio, video) if t is not None]
        return torch.cat(parts, dim=-1)


class PassthroughFusion(nn.Module):
    """Unimodal models: the masked mean of the single present modality."""

    def __init__(self, *, audio_dim: int | None, video_dim: int | None) -> None:
        super().__init__()
        if (audio_dim is None) == (video_dim is None):
            raise ConfigError(
                "fusion",
                "'passthrough' needs exactly one modality (set audio or video to 'none'); "
                "use 'cma' or 'concat' for two",
            )
        self.out_dim = audio_dim if audio_dim is not None else video_dim

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        if (audio is None) == (video is None):
            raise ConfigError("fusion", "'passthrough' needs exactly one modality in the batch")
        return (audio if audio is not None else video).mean()


@hookimpl
def register_intra_modal_blocks(register):
    register(
        "ima",
        IntraModalAttention,
        config=IMAConfig,
        description="intra-modal self-attention (paper eqs. 4–7), masked",
    )
    register("identity", IdentityIntra, description="no intra-modal block (w/o IMA ablation)")


@hookimpl
def register_fusions(register):
    register(
        "cma",
        CrossModalAttention,
        config=CMAConfig,
        description="cross-modal attention both ways, pooled (paper eq. 8, MulT-style)",
    )
    register("concat", ConcatFusion, description="masked means concatenated (w/o CMA ablation)")
    register("passthrough", PassthroughFusion, description="masked mean of the one modality")
