"""Bounded memory in clip length: a training crop, and long clips scored by windows.

Encoders and attention cost memory in the number of audio frames (attention in its
square), and a batch pads to its longest clip, so one 10-minute file took a training run
to 14.8 GB. Training therefore crops long clips at random to :func:`crop_frames`, and
evaluation and prediction score a long clip by windows of the same length (hop: half a
window), in chunks of at most a batch of windows, averaging the windows' logits per clip.
A clip no longer than a window is scored whole, exactly as before. :func:`stream_windows`
and :func:`streamed_logits` do the same for one clip whose features arrive in chunks
(prediction on a long file, :mod:`avsent.data.streaming`), holding a window and a chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import numpy as np
import torch

from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample, collate
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


def default_hop(window: int) -> int:
    """Half a window: each frame is scored by two windows (one at the clip's edges)."""
    return max(1, window // 2)


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
    hop = hop or default_hop(window)
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


def stream_windows(
    chunks: Iterable[np.ndarray], window: int, hop: int | None = None
) -> Iterator[np.ndarray]:
    """The pieces :func:`windowed_logits` cuts from one clip (at :func:`window_starts`), from
    its features [F, T] arriving as chunks [F, t] along time; a clip of at most a window is
    one piece. Holds at most a window and a chunk of frames."""
    hop = hop or default_hop(window)
    held: np.ndarray | None = None  # frames ``offset`` onwards
    offset = 0
    start = 0  # the next regular window start: 0, hop, 2·hop, ...
    emitted = None
    for chunk in chunks:
        held = chunk if held is None else np.concatenate([held, chunk], axis=1)
        end = offset + held.shape[1]
        while start + window <= end:
            yield held[:, start - offset : start - offset + window].copy()
            emitted, start = start, start + hop
        # the last window ends at the clip's end, so it may begin before the next start
        keep = max(offset, min(start, end - window))
        held, offset = held[:, keep - offset :], keep
    if held is None:
        raise ValueError("a clip needs at least one chunk of features")
    length = offset + held.shape[1]
    last = max(0, length - window)
    if emitted != last:
        yield held[:, last - offset :].copy()


@torch.no_grad()
def streamed_logits(
    model: torch.nn.Module,
    windows: Iterable[np.ndarray],
    others: ClipFeatures,
    per_pass: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits [K] of one clip: the mean of its ``windows``' logits, as
    :func:`windowed_logits` gives it, ``per_pass`` windows through the model at once; each
    window carries the clip's ``others`` (video, geometry)."""
    total: torch.Tensor | None = None
    count = 0
    part: list[Sample] = []

    def score() -> None:
        nonlocal total, count
        logits = model(collate(part).to(device)).logits
        total = logits.sum(0) if total is None else total + logits.sum(0)
        count += len(part)
        part.clear()

    for window in windows:
        part.append(Sample(attrs.evolve(others, audio=window), None))
        if len(part) == per_pass:
            score()
    if part:
        score()
    if total is None:
        raise ValueError("a clip needs at least one window")
    return total / count
