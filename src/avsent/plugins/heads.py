"""Classification heads: the paper's FC layer (softmax is applied by the loss / at inference)."""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import nn

from avsent.hookspecs import hookimpl


@attrs.define
class LinearHeadConfig:
    dropout: float = attrs.field(default=0.2, validator=[v.ge(0.0), v.lt(1.0)])


class LinearHead(nn.Module):
    """Dropout → FC → K logits (paper §3.5)."""

    def __init__(self, config: LinearHeadConfig, *, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


@hookimpl
def register_heads(register):
    register.head(
        "linear", LinearHead, config=LinearHeadConfig, description="FC → logits (paper §3.5)"
    )
