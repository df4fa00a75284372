"""A GRU audio encoder: features [B, F, T] → one token per frame [B, T, hidden]."""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import nn

from avsent.contracts import Tokens
from avsent.hookspecs import hookimpl
from avsent.layers.masks import zero_padding


@attrs.define
class GRUAudioConfig:
    hidden: int = attrs.field(default=64, validator=v.ge(1))
    layers: int = attrs.field(default=1, validator=v.ge(1))
    bidirectional: bool = True


class GRUAudio(nn.Module):
    def __init__(self, config: GRUAudioConfig, *, in_features: int) -> None:
        super().__init__()
        directions = 2 if config.bidirectional else 1
        self.gru = nn.GRU(
            in_features,
            config.hidden // directions,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        self.out_dim = (config.hidden // directions) * directions

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            x.transpose(1, 2), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[2])
        return Tokens(zero_padding(out, mask), mask)  # an all-padding clip has no token


@hookimpl
def register_audio_encoders(register):
    register.audio_encoder(
        "gru-audio", GRUAudio, config=GRUAudioConfig, description="GRU over feature frames"
    )
