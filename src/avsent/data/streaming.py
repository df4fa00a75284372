"""A long file's audio features a chunk at a time, so memory holds a chunk, not the file.

A centred STFT frame ``t`` reads samples ``[t·hop − n_fft/2, t·hop + n_fft/2)``. The frames
of a chunk are therefore the front-end's output on the chunk's samples plus ``context``
(⌈n_fft / 2 / hop⌉) hop-aligned frames of samples either side, keeping the middle columns:
the whole file's frames up to float rounding. The first segment starts at the file's start
and the last ends at its end, where the front-end's own zero padding is the file's. A file
that fits in one segment is computed whole, exactly as before (bit for bit).

What this module knows about front-ends is :func:`_local_form`: mel-chroma qualifies when
no frame depends on the whole clip — a fixed chroma ``tuning`` (``None`` estimates it from
the whole clip) and no ``top_db`` (a clip to the whole clip's maximum). Any other front-end
is not :func:`streamable`, and its callers compute the file whole. The chunks are the
front-end's own units (as the cache holds them); a standardisation over the whole clip
(``data.utterance_norm``) is the normalisation stage's
(:func:`avsent.data.normalise.standardise_utterance_chunks`, two passes over the file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs
import numpy as np

from avsent.contracts import AudioFrontEnd


@attrs.frozen(eq=False)
class Segment:
    """Samples whose front-end output holds a run of the file's frames: columns
    ``skip : skip + frames`` (``frames`` None: to the end, the file's last segment)."""

    samples: np.ndarray
    skip: int
    frames: int | None

    @property
    def whole(self) -> bool:
        """The segment is the entire file."""
        return self.skip == 0 and self.frames is None

    def keep(self, features: np.ndarray) -> np.ndarray:
        stop = None if self.frames is None else self.skip + self.frames
        return features[:, self.skip : stop]


def segments(
    blocks: Iterable[np.ndarray], hop: int, context: int, chunk_frames: int
) -> Iterator[Segment]:
    """Overlapping segments of ``blocks`` whose kept frames are, in order, ``chunk_frames``
    of the file's frames each (the last: the rest). Holds at most a segment and a block."""
    if chunk_frames < context:
        raise ValueError(f"chunk_frames ({chunk_frames}) must be at least context ({context})")
    pending: list[np.ndarray] = []
    buffered = 0  # samples in ``pending``, which starts at sample ``start`` of the file
    start = 0  # always a multiple of hop
    first = 0  # the next frame to hand out
    for block in blocks:
        pending.append(block)
        buffered += block.size
        need = (first + chunk_frames - 1 + context) * hop - start
        while buffered >= need:
            samples = np.concatenate(pending)
            yield Segment(samples[:need], first - start // hop, chunk_frames)
            first += chunk_frames
            step = (first - context) * hop - start
            pending, start = [samples[step:].copy()], start + step
            buffered -= step
            need = (first + chunk_frames - 1 + context) * hop - start
    samples = np.concatenate(pending) if pending else np.zeros(0, np.float32)
    yield Segment(samples, first - start // hop, None)


@attrs.frozen(eq=False)
class _Form:
    """How a front-end can run by segments."""

    hop: int  #: samples per frame
    context: int  #: frames of samples either side a frame depends on


def _local_form(frontend: AudioFrontEnd) -> _Form | None:
    """The front-end's frame geometry when each frame depends on nearby samples only."""
    from avsent.plugins.audio_features import MelChroma

    if type(frontend) is not MelChroma:
        return None
    c = frontend.config
    if c.tuning is None or c.top_db is not None:
        return None
    return _Form(c.hop_length, -(-c.n_fft // (2 * c.hop_length)))


def streamable(frontend: AudioFrontEnd) -> bool:
    """Whether :func:`feature_chunks` can compute this front-end by chunks."""
    return _local_form(frontend) is not None


def feature_chunks(
    frontend: AudioFrontEnd, blocks: Iterable[np.ndarray], chunk_frames: int
) -> Iterator[np.ndarray]:
    """float32 [F, t] chunks of ``chunk_frames`` frames (the last: the rest) whose
    concatenation is ``frontend`` on the whole file of sample ``blocks``; a file of at most
    about a chunk comes as one chunk, ``frontend``'s own output on all of it."""
    form = _local_form(frontend)
    if form is None:
        raise ValueError(f"{type(frontend).__name__} cannot be computed by chunks")
    pieces = segments(blocks, form.hop, form.context, chunk_frames)
    head = next(pieces)
    if head.whole:
        yield _float32(frontend(head.samples))
        return
    yield _float32(head.keep(frontend(head.samples)))
    for piece in pieces:
        yield _float32(piece.keep(frontend(piece.samples)))


def _float32(features: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(features, dtype=np.float32)
