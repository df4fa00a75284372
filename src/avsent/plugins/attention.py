"""Attention parts of MAVSA-DI (paper §3.4) and the simple fusions its ablations need.

* ``ima`` — intra-modal attention. ``style = "paper"`` (default) is eqs. 4–7 as written:
  Q, K, V linear maps of the branch's tokens, α = softmax(QKᵀ/√d_k), F′ = αV — nothing
  else. ``style = "transformer"`` is a variant (pre-LayerNorm residual block with a
  feed-forward layer, several heads), used by the ``mavsa-di-plus`` recipe.
* ``identity`` — the "w/o IMA" ablation: tokens pass unchanged.
* ``cma`` — cross-modal attention, eq. 8 as written: Q_av, K_av, V_av are linear maps of
  the audio-visual token sequence (F′_a and F′_v side by side), β_av = softmax(Q_av K_avᵀ
  /√d_k), and F_fusion = β_av V_av, pooled over the real tokens into the head's input.
  Every token queries; with ``attend = "other"`` (default) each token's keys are the
  *other* modality's tokens only, which is what makes the attention cross-modal (β_av's
  intra-modal blocks are masked). Paper silent on: the query side (both modalities here,
  so neither branch's content is lost — F_fusion holds audio values read by video queries
  and video values read by audio queries), per-modality maps (the branch widths differ),
  the width d_k (``d_model``) and the pooling (masked mean).
  A clip without one modality (no real step) is fused from the other alone.
* ``cma-mult`` — a variant: the MulT stack (Tsai et al. 2019), both directions, pre-LN
  residual blocks with FFNs, sinusoidal positions, pooled and concatenated.
* ``concat`` — the "w/o CMA" ablation: masked means of the present modalities, concatenated.
* ``passthrough`` — unimodal models: the masked mean of the one present modality.

Every part honours the padding masks (:mod:`avsent.layers.masks`): padded keys get no
attention weight and padded query steps are zeroed, so padding never reaches the output.
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
from avsent.layers.attention import AttentionBlock, QKVAttention, scaled_dot_product, sinusoid
from avsent.layers.masks import masked_mean, zero_padding

_unit = [v.ge(0.0), v.lt(1.0)]


@attrs.define
class IMAConfig:
    """Intra-modal attention; the defaults are eqs. 4–7 (one attention map, no extras)."""

    style: Literal["paper", "transformer"] = "paper"
    #: width of Q, K and V; 0 = the encoder's width (paper silent: d_k is not given)
    d_model: int = attrs.field(default=0, validator=v.ge(0))
    heads: int = attrs.field(default=1, validator=v.ge(1))  #: the equations have one α
    layers: int = attrs.field(default=1, validator=v.ge(1))
    attn_dropout: float = attrs.field(default=0.0, validator=_unit)
    dropout: float = attrs.field(default=0.1, validator=_unit)  #: transformer: residual, FFN
    ffn_mult: int = attrs.field(default=4, validator=v.ge(1))  #: transformer only
    positional: bool = False  #: add sinusoidal time positions before attending


@attrs.define
class CMAConfig:
    """Cross-modal attention by eq. 8 (one β_av); widths and pooling are paper silent."""

    d_model: int = attrs.field(default=128, validator=v.ge(1))  #: width of Q_av, K_av, V_av
    heads: int = attrs.field(default=1, validator=v.ge(1))
    #: "other": each token attends over the other modality's tokens; "all": over both
    attend: Literal["other", "all"] = "other"
    attn_dropout: float = attrs.field(default=0.0, validator=_unit)


@attrs.define
class MulTConfig:
    """The MulT-style cross-modal stack (MulT defaults: d 30–64, 4–8 heads, dropout 0.1)."""

    d_model: int = attrs.field(default=64, validator=v.ge(1))
    heads: int = attrs.field(default=4, validator=v.ge(1))
    layers: int = attrs.field(default=2, validator=v.ge(1))
    attn_dropout: float = attrs.field(default=0.1, validator=_unit)
    dropout: float = attrs.field(default=0.1, validator=_unit)
    ffn_mult: int = attrs.field(default=4, validator=v.ge(1))
    positional: bool = True
    combine: Literal["concat", "sum"] = "concat"


# -- intra-modal -----------------------------------------------------------------------


class IntraModalAttention(nn.Module):
    """IMA over one modality's tokens; keeps the mask, width ``out_dim``."""

    def __init__(self, config: IMAConfig, *, dim: int) -> None:
        super().__init__()
        self.config = config
        self.out_dim = config.d_model or dim
        if config.style == "paper":
            # eq. 4–7: the linear maps of Q, K, V are the only parameters
            self.proj = nn.Identity()
            self.layers = nn.ModuleList(
                QKVAttention(
                    dim if i == 0 else self.out_dim,
                    dim if i == 0 else self.out_dim,
                    self.out_dim,
                    config.heads,
                    config.attn_dropout,
                )
                for i in range(config.layers)
            )
            self.norm = nn.Identity()
        else:
            self.proj = nn.Linear(dim, self.out_dim) if config.d_model else nn.Identity()
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
            x = x + sinusoid(x.shape[1], x.shape[2], x.device).to(x.dtype)
        for layer in self.layers:
            x = layer(x, x, tokens.mask)
        return Tokens(zero_padding(self.norm(x), tokens.mask), tokens.mask)


class IdentityIntra(nn.Module):
    """The "w/o IMA" ablation: tokens unchanged."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, tokens: Tokens) -> Tokens:
        return tokens


# -- fusions ---------------------------------------------------------------------------


def _needs_both(name: str, audio_dim: int | None, video_dim: int | None) -> None:
    if audio_dim is None or video_dim is None:
        raise ConfigError(
            "fusion", f"{name!r} needs both audio and video; use 'passthrough' for one modality"
        )


class CrossModalAttention(nn.Module):
    """CMA by eq. 8: one β_av over the audio-visual tokens, F_fusion = β_av V_av, pooled."""

    def __init__(self, config: CMAConfig, *, audio_dim: int | None, video_dim: int | None):
        super().__init__()
        _needs_both("cma", audio_dim, video_dim)
        self.config = config
        d = config.d_model
        if d % config.heads:
            raise ConfigError("fusion.heads", f"width {d} is not divisible by {config.heads}")
        # one set of maps per modality: the branches' widths differ (paper silent)
        self.audio_qkv = nn.Linear(audio_dim, 3 * d)
        self.video_qkv = nn.Linear(video_dim, 3 * d)
        self.out_dim = d

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        if audio is None or video is None:
            raise ConfigError("fusion", "'cma' got a batch without audio or without video")
        qkv = torch.cat([self.audio_qkv(audio.x), self.video_qkv(video.x)], dim=1)
        q, k, val = qkv.chunk(3, dim=-1)
        mask = torch.cat([audio.mask, video.mask], dim=1)
        allowed = None
        if self.config.attend == "other":
            allowed = self._other_modality(audio, video)
        fused = scaled_dot_product(
            q,
            k,
            val,
            mask,
            heads=self.config.heads,
            dropout=self.config.attn_dropout if self.training else 0.0,
            allowed=allowed,
        )
        return masked_mean(fused, mask)

    @staticmethod
    def _other_modality(audio: Tokens, video: Tokens) -> torch.Tensor:
        """[B, Ta+Tv, Ta+Tv]: each token may see the other modality's tokens; in a clip
        that lacks one modality (no real step: dropped, or absent from the file) the
        present one attends over itself, so F_fusion still holds its evidence."""
        ta, tv = audio.x.shape[1], video.x.shape[1]
        device = audio.mask.device
        is_video = torch.cat(
            [
                torch.zeros(ta, dtype=torch.bool, device=device),
                torch.ones(tv, dtype=torch.bool, device=device),
            ]
        )
        cross = is_video[:, None] != is_video[None, :]  # [T, T]
        both = audio.mask.any(1) & video.mask.any(1)  # [B]
        return cross == both[:, None, None]  # both present: cross; else within (no Where: ONNX)


class MulTFusion(nn.Module):
    """The MulT variant: each modality queries the other through a stack of pre-LN blocks;
    masked pooling; concat or sum."""

    def __init__(self, config: MulTConfig, *, audio_dim: int | None, video_dim: int | None):
        super().__init__()
        _needs_both("cma-mult", audio_dim, video_dim)
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
            raise ConfigError("fusion", "'cma-mult' got a batch without audio or without video")
        a = self.audio_in(audio.x)
        vv = self.video_in(video.x)
        if self.config.positional:
            a = a + sinusoid(a.shape[1], a.shape[2], a.device).to(a.dtype)
            vv = vv + sinusoid(vv.shape[1], vv.shape[2], vv.device).to(vv.dtype)
        v_att, a_att = vv, a
        for block in self.video_from_audio:
            v_att = block(v_att, a, audio.mask)
        for block in self.audio_from_video:
            a_att = block(a_att, vv, video.mask)
        v_vec = masked_mean(self.norm_video(v_att), video.mask)
        a_vec = masked_mean(self.norm_audio(a_att), audio.mask)
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
    register.intra_modal(
        "ima",
        IntraModalAttention,
        config=IMAConfig,
        description="intra-modal attention, eqs. 4–7 (style 'transformer': encoder-layer variant)",
    )
    register.intra_modal(
        "identity", IdentityIntra, description="no intra-modal block (w/o IMA ablation)"
    )


@hookimpl
def register_fusions(register):
    register.fusion(
        "cma",
        CrossModalAttention,
        config=CMAConfig,
        description="cross-modal attention, eq. 8: one β_av over the audio-visual tokens",
    )
    register.fusion(
        "cma-mult",
        MulTFusion,
        config=MulTConfig,
        description="variant: MulT cross-modal stacks both ways, pooled and concatenated",
    )
    register.fusion(
        "concat", ConcatFusion, description="masked means concatenated (w/o CMA ablation)"
    )
    register.fusion("passthrough", PassthroughFusion, description="masked mean of the one modality")
