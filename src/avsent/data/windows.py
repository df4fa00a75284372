"""Bounded memory in clip length: a training crop, and long clips scored by windows.

Encoders and attention cost memory in the number of audio frames (attention in its
square), and a batch pads to its longest clip, so one 10-minute file took a training run
to 14.8 GB. Training therefore crops long clips at random to :func:`crop_frames`, and
evaluation and prediction score a long clip by windows of the same length (hop: half a
window), in chunks of at most a batch of windows, averaging the windows' logits per clip.
A clip no longer than a window is scored whole, exactly as before.
"""

from __future__ import annotations

from typing import Any

import torch

from avsent.model import Batch, audio_feature_spec

#: the default training crop and scoring window, in seconds. The paper is silent on clip
#: length (its clips are short utterances); 10 s holds a whole emotional utterance of
#: the acted corpora (EmoDB's longest is ~9 s, so they are never cropped) while bounding
#: memory for anything longer.
DEFAULT_CROP_SECONDS = 10.0


def crop_frames(config: Any) -> int | None:
    """``train.max_audio_frames`` in frames: ``"auto"`` is :data:`DEFAULT_CROP_SECONDS` at
    the front-end's frame rate; 0 means whole clips (``None``, memory unbounded)."""
    value = config.train.max_audio_frames
    if value == "auto":
        fps = audio_feature_spec(config).frames_per_second
        return max(1, round(DEFAULT_CROP_SECONDS * fps))
    return value or None


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows covering ``length`` frames; the last ends at the clip's end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def _window_batch(batch: Batch, pieces: list[tuple[int, int, int]]) -> Batch:
    """The batch of windows (clip index, start, frames); other modalities follow their clip."""
    owners = torch.tensor([i for i, _, _ in pieces])
    width = max(n for _, _, n in pieces)
    audio = batch.audio.new_zeros((len(pieces), batch.audio.shape[1], width))
    mask = torch.zeros((len(pieces), width), dtype=torch.bool, device=batch.audio.device)
    for row, (i, start, n) in enumerate(pieces):
        audio[row, :, :n] = batch.audio[i, :, start : start + n]
        mask[row, :n] = True
    owners_d = owners.to(batch.audio.device)

    def take(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.index_select(0, owners_d)

    return Batch(audio, mask, take(batch.video), take(batch.video_mask), take(batch.geometry), None)


def windowed_logits(
    model: torch.nn.Module, batch: Batch, window: int | None, hop: int | None = None
) -> torch.Tensor:
    """Logits [B, K] of ``batch``; a clip longer than ``window`` frames gets the mean of its
    windows' logits (``hop`` defaults to half a window). At most ``B`` windows go through
    the model at once, so memory is that of a batch of windows whatever the clips' length."""
    if window is None or batch.audio is None or batch.audio.shape[2] <= window:
        return model(batch).logits
    hop = hop or max(1, window // 2)
    lengths = batch.audio_mask.sum(dim=1).tolist()
    pieces = [
        (i, start, min(window, length))
        for i, length in enumerate(lengths)
        for start in window_starts(length, window, hop)
    ]
    chunk = batch.size
    sums: torch.Tensor | None = None
    counts = torch.zeros(batch.size, device=batch.audio.device)
    for first in range(0, len(pieces), chunk):
        part = pieces[first : first + chunk]
        logits = model(_window_batch(batch, part)).logits
        owners = torch.tensor([i for i, _, _ in part], device=logits.device)
        if sums is None:
            sums = logits.new_zeros((batch.size, logits.shape[1]))
        sums.index_add_(0, owners, logits)
        counts.index_add_(0, owners, torch.ones(len(part), device=counts.device))
    return sums / counts.to(sums.dtype)[:, None]
