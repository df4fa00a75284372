"""Audio samples from any media file, decoded in-process with PyAV (FFmpeg inside the wheel).

Works for wav, flac, mp3, m4a/aac and the audio track of mp4, mov, mkv, avi and flv: no
system ffmpeg, no librosa audioread fallback. Every way a file can be unusable ends in a
:class:`~avsent.errors.MediaError` that names the file and says what is wrong, never an
FFmpeg traceback:

* missing file, or a folder;
* no audio stream (a silent video);
* corrupt or unreadable data, or a container cut short (FFmpeg fails to open or decode);
* truncated audio: fewer samples decoded than the stream (or a WAV header) declares —
  ``allow_truncated=True`` keeps what could be decoded;
* empty: no samples at all;
* silent: peak below ``silence_threshold`` — ``allow_silent=True`` returns the samples.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from avsent.errors import MediaError

#: Peak amplitude (full scale = 1.0) below which a clip counts as silent: -80 dBFS.
SILENCE_THRESHOLD = 1e-4
#: Decoded audio may fall short of the declared duration by this much before it counts as
#: truncated: AAC/MP3 priming and container rounding differ by a few frames.
TRUNCATION_TOLERANCE_S = 0.25
TRUNCATION_TOLERANCE_FRACTION = 0.05

_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    allow_silent: bool = False,
    allow_truncated: bool = False,
    silence_threshold: float = SILENCE_THRESHOLD,
) -> np.ndarray:
    """Mono float32 samples [N] at ``sample_rate`` from the first audio stream of ``path``.

    Channels are averaged (so a stereo file with identical channels keeps its level), and
    FFmpeg's resampler converts the rate while decoding. ``max_seconds`` stops decoding
    early (long files, training crops); the truncation check is skipped then. The samples
    are :func:`stream_audio`'s blocks, joined.

    :raises MediaError: the file is missing, has no audio, is corrupt, truncated, empty
        or silent (see the module docstring for the two opt-outs).
    """
    blocks = list(
        stream_audio(
            path,
            sample_rate,
            max_seconds=max_seconds,
            allow_silent=allow_silent,
            allow_truncated=allow_truncated,
            silence_threshold=silence_threshold,
        )
    )
    return np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)


def stream_audio(
    path: str | Path,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    allow_silent: bool = False,
    allow_truncated: bool = False,
    silence_threshold: float = SILENCE_THRESHOLD,
) -> Iterator[np.ndarray]:
    """:func:`load_audio`'s samples as mono float32 blocks, decoded and resampled one
    FFmpeg frame at a time, so a file of any length costs the memory of a few frames.

    The checks that need the whole file (truncated, empty, silent, NaN) run after the last
    block: the MediaError comes at the end of the iteration, so a consumer must finish it
    before trusting what it computed. A file that cannot be opened fails on the first block.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found")
    if not path.is_file():
        raise MediaError(path, "not a file (a folder?)")
    limit = None if max_seconds is None else round(max_seconds * sample_rate)
    decoded = _Decoded()
    for block in _decode(path, sample_rate, limit, decoded):
        decoded.add(block)
        yield block
    _check(path, decoded, sample_rate, check_length=limit is None and not allow_truncated)
    if decoded.peak < silence_threshold and not allow_silent:
        level = 20 * np.log10(decoded.peak) if decoded.peak > 0 else float("-inf")
        raise MediaError(
            path,
            f"the audio is silent (peak {level:.0f} dBFS, threshold "
            f"{20 * np.log10(silence_threshold):.0f} dBFS)",
        )


class _Decoded:
    """What the whole-file checks need, gathered block by block."""

    def __init__(self) -> None:
        self.samples = 0
        self.peak = 0.0
        self.finite = True
        self.declared: float | None = None  #: the duration the file declares, if any

    def add(self, block: np.ndarray) -> None:
        self.samples += block.size
        if block.size:
            peak = float(np.max(np.abs(block)))
            self.finite = self.finite and bool(np.isfinite(peak))
            self.peak = max(self.peak, peak) if np.isfinite(peak) else self.peak


def _check(path: Path, decoded: _Decoded, sample_rate: int, *, check_length: bool) -> None:
    """Empty, truncated and non-finite audio, in that order (silence is the caller's)."""
    if decoded.samples == 0:
        raise MediaError(path, "the audio stream contains no samples (empty clip)")
    declared = decoded.declared
    if check_length and declared is not None:
        seconds = decoded.samples / sample_rate
        if seconds < declared - max(
            TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * declared
        ):
            raise MediaError(
                path,
                f"audio is truncated: only {seconds:.2f} s could be decoded of the "
                f"{declared:.2f} s the file declares (an interrupted copy or download?)",
            )
    if not decoded.finite:
        raise MediaError(path, "decoded audio contains NaN or infinite values (corrupt data)")


def _decode(
    path: Path, sample_rate: int, limit: int | None, decoded: _Decoded
) -> Iterator[np.ndarray]:
    """Mono resampled blocks, at most ``limit`` samples in all; sets ``decoded.declared``."""
    try:
        container = av.open(str(path))
    except _DECODE_ERRORS as exc:
        raise MediaError(path, f"cannot be read as audio or video: {_reason(exc)}") from None
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["no streams at all"]
            raise MediaError(path, f"has no audio stream (it contains: {', '.join(kinds)})")
        stream = container.streams.audio[0]
        decoded.declared = _declared_seconds(path, container, stream)
        left = limit
        resampler = None
        frames = container.decode(stream)
        while left is None or left > 0:
            try:
                frame = next(frames, None)
                if resampler is None and frame is not None:
                    # Keep the channel layout (averaged below); only the rate changes.
                    # Packed "flt", not planar: PyAV crashes reading 8+ planes.
                    resampler = av.AudioResampler(
                        format="flt", layout=frame.layout, rate=sample_rate
                    )
                # None flushes the resampler's last samples at the end of the stream
                outs = [] if resampler is None else resampler.resample(frame)
            except _DECODE_ERRORS as exc:
                raise MediaError(
                    path, f"the audio data is corrupt or truncated ({_reason(exc)})"
                ) from None
            for out in outs:
                block = _mono(out)
                if left is not None:
                    block, left = block[:left], left - min(left, block.size)
                if block.size:
                    yield block
            if frame is None:
                break


def _mono(frame: av.AudioFrame) -> np.ndarray:
    channels = frame.layout.nb_channels
    interleaved = frame.to_ndarray().reshape(-1, channels)  # packed: [1, samples · channels]
    mono = interleaved.mean(axis=1, dtype=np.float32) if channels > 1 else interleaved[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32)


def _declared_seconds(
    path: Path, container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    """The audio length the file claims: the stream's index, or a WAV header's data size.

    FFmpeg derives a WAV's duration from the file size, so a cut-off WAV looks whole to
    it; the RIFF header still holds the size that was written.
    """
    if "wav" in container.format.name.split(","):
        return _wav_header_seconds(path)
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _wav_header_seconds(path: Path) -> float | None:
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None  # RF64/W64 or something unusual: no claim to check
    pos, byte_rate = 12, None
    while pos + 8 <= len(head):
        tag, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if tag == b"fmt " and pos + 16 <= len(head):
            byte_rate = struct.unpack("<I", head[pos + 16 : pos + 20])[0]
        if tag == b"data":
            # 0 and 0xFFFFFFFF mean "unknown" (written by a stream that was never closed).
            if not byte_rate or size in (0, 0xFFFFFFFF):
                return None
            return size / byte_rate
        pos += 8 + size + (size & 1)
    return None


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words, without the errno and the path (the message names the file)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
