"""The padding-mask rules every component shares, in one place.

A mask is boolean [B, T] with ``True`` at real (non-padded) steps. The rules:

* pooling over time counts real steps only, and an all-padding row pools to zeros (0/0 is
  never computed);
* a downsampled step is real when any input step it covers is real;
* attention never gives weight to a padded key; a row with no real key attends uniformly
  (its output is zeroed afterwards), so softmax never sees an empty row;
* padded steps are zeroed before a convolution, so what padding held never matters.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, T, D] over the real steps of mask [B, T] → [B, D] (zeros if none)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def downsample_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Mask [B, T] → [B, length]: a step is real if any input step it covers is real."""
    if mask.shape[1] == length:
        return mask
    pooled = F.adaptive_max_pool1d(mask.float().unsqueeze(1), length)
    return pooled.squeeze(1) > 0


def stride_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Mask [B, T] → [B, ceil(T / stride)], the exact output length of a stride-s conv
    (k=3, p=1) and of ceil-mode pooling; a step is real if any step it covers is."""
    if stride == 1:
        return mask
    # pad to a multiple of the stride and group: plain arithmetic keeps T symbolic under
    # torch.export, which ceil-mode pooling does not
    padded = F.pad(mask, (0, (-mask.shape[1]) % stride))
    return padded.view(mask.shape[0], -1, stride).any(dim=-1)


def attention_mask(key_mask: torch.Tensor) -> torch.Tensor:
    """Key mask [B, T] → [B, 1, 1, T] for attention; an all-padding row attends to all."""
    empty = ~key_mask.any(dim=1, keepdim=True)
    return (key_mask | empty)[:, None, None, :]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of scores [B, T] over real steps; an all-padding row gets uniform weights."""
    safe = mask | ~mask.any(dim=1, keepdim=True)
    return torch.softmax(scores.masked_fill(~safe, float("-inf")), dim=1)


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Tokens x [B, T, D] with the padded steps set to zero."""
    return x * mask.unsqueeze(-1).to(x.dtype)


def zero_padded_steps(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Features with padded time steps zeroed: audio [B, F, T] (time last) or video
    [B, C, T, H, W] (time third), so convolutions see the same whatever padding held."""
    if x.dim() == 3:
        return x * mask[:, None, :].to(x.dtype)
    if x.dim() == 5:
        return x * mask[:, None, :, None, None].to(x.dtype)
    raise ValueError(f"expected audio [B, F, T] or video [B, C, T, H, W], got {tuple(x.shape)}")
