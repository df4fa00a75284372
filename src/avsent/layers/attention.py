"""Attention building blocks shared by the attention plugins and the baselines.

* :class:`QKVAttention` — the paper's form (eqs. 4–8): linear Q, K, V maps and
  ``softmax(Q Kᵀ / √d_k) V``, nothing else (no output map, residual or normalisation).
* :class:`MultiHeadAttention` — the Transformer form: the same core plus an output map.
* :class:`AttentionBlock` — a pre-LayerNorm residual block around it with a feed-forward
  layer (Transformer encoder layer; with ``cross=True`` a MulT cross-modal block).

Keys at padded steps get no weight (:func:`avsent.layers.masks.attention_mask`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from avsent.errors import ConfigError
from avsent.layers.masks import attention_mask


def sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Transformer sinusoidal positions [length, dim]."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    idx = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * idx / dim)
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor,
    *,
    heads: int,
    dropout: float = 0.0,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(Q Kᵀ / √d_k) V`` per head, d_k = width / heads; q [B,Tq,D], k/v [B,Ts,D].

    ``allowed`` [B, Tq, Ts] (optional) further restricts which key each query may see; a
    query left with no allowed real key attends uniformly (callers zero such rows).
    """
    mask = attention_mask(key_mask)  # [B, 1, 1, Ts]
    if allowed is not None:
        mask = mask & allowed[:, None]
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    y = F.scaled_dot_product_attention(
        _split_heads(q, heads),
        _split_heads(k, heads),
        _split_heads(v, heads),
        attn_mask=mask,
        dropout_p=dropout,
    )
    return _merge_heads(y)


def _check_heads(dim: int, heads: int) -> None:
    if dim % heads:
        raise ConfigError("heads", f"width {dim} is not divisible by {heads} heads")


class QKVAttention(nn.Module):
    """The paper's attention: Q = W_q·x_q, K = W_k·x_s, V = W_v·x_s, α = softmax(QKᵀ/√d_k),
    output αV (width ``dim``). Query and source may have different widths."""

    def __init__(
        self, query_dim: int, source_dim: int, dim: int, heads: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(query_dim, dim)
        self.k = nn.Linear(source_dim, dim)
        self.v = nn.Linear(source_dim, dim)

    def forward(
        self, query: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor
    ) -> torch.Tensor:
        return scaled_dot_product(
            self.q(query),
            self.k(source),
            self.v(source),
            source_mask,
            heads=self.heads,
            dropout=self.dropout if self.training else 0.0,
        )


class MultiHeadAttention(nn.Module):
    """softmax(Q Kᵀ / √d_k) V with linear Q, K, V and output maps; keys masked."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.core = QKVAttention(dim, dim, dim, heads, dropout)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, query: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.core(query, source, source_mask))


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
