"""Decode a video file and sample frames from it, reading no more of the file than needed.

Frames are chosen by presentation time, so variable frame rates work: the frame kept for a
target time is the one on screen at that moment (the last frame whose timestamp is not after
it). Decoding runs forward through the file and jumps ahead with a seek only when that
skips work: with a key-frame index (MP4, MOV, AVI) exactly when a key frame lies between
the current position and the next target; without one (MKV, WebM, FLV) when the target is
more than ``seek_gap`` seconds ahead. Between kept frames the decoder is told to skip the
frames no other frame is predicted from (most B-frames of H.264 and MPEG-4), which halves
the decoding of a typical H.264 file; the kept frames come out bit for bit as a full
decode gives them. Only kept frames are converted to RGB arrays, which is most of the
per-frame cost once a frame is decoded. Rotation stored in the file (a display matrix or an
old ``rotate`` tag, as phones write) is applied, so faces come out upright.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import attrs
import av
import av.error
import numpy as np

from avsent.errors import MediaError

#: frames may end this many seconds before the stated duration without the file counting as
#: truncated (containers often state the longest stream's length, e.g. audio running longer)
DEFAULT_END_TOLERANCE = 1.0
#: a file whose frames end early is still used (sampled over the frames it has) when they
#: cover at least this fraction of the stated duration; below it, it is reported as truncated
DEFAULT_MIN_COVERAGE = 0.5
#: without a key frame index, jump ahead with a seek when the next target is further away
#: than this (seconds)
DEFAULT_SEEK_GAP = 2.0
#: packets looked at on each side of a packet to find the frame shown after it: more than
#: any decoder holds back for reordering (H.264 and HEVC hold at most 16 frames)
REORDER_WINDOW = 32
#: seconds of slack when matching a packet's time to the targets (only widens what is decoded)
_TIME_SLACK = 1e-3


@attrs.frozen(eq=False)
class VideoFrames:
    """Sampled frames of one clip.

    ``frames`` [T, H, W, 3] uint8 RGB, upright; ``times`` [T] presentation times in seconds
    (as the file states them); ``fps`` the stream's average frame rate; ``duration`` the
    sampled length in seconds; ``truncated`` whether the frames ended before the length the
    file states (then the frames were sampled over the part that decodes).
    """

    frames: np.ndarray
    times: np.ndarray
    fps: float
    duration: float
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.frames)


def read_frames(
    path: str | Path,
    *,
    num_frames: int = 16,
    fps: float | None = None,
    seek_gap: float = DEFAULT_SEEK_GAP,
    end_tolerance: float = DEFAULT_END_TOLERANCE,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> VideoFrames:
    """Sample ``num_frames`` frames spread uniformly over the clip, or frames at a fixed ``fps``.

    Uniform sampling takes the centre of each of ``num_frames`` equal time slices. With
    ``fps``, frames are taken every ``1 / fps`` seconds from the start, stopping after
    ``num_frames`` frames or at the end of the clip (so T may be shorter than ``num_frames``).
    A file whose frames end before its stated duration is sampled over the frames it has if
    they cover ``min_coverage`` of it, and reported as truncated otherwise.

    :raises MediaError: missing file, no video stream, corrupt or truncated file, no decodable frame.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found" if not path.exists() else "not a file")
    span: tuple[float, float] | None = None  # (start, end) seconds to sample over
    seek = True
    for _attempt in range(
        4
    ):  # again when the duration is unknown, frames end early, or a seek failed
        with _open(path) as container:
            stream = _video_stream(container, path)
            stated = _stated_span(container, stream)
            if span is None and stated is None:  # learn the duration from the timestamps
                span = _scanned_span(container, stream, path)
                continue
            span = span or stated
            targets = _targets(*span, num_frames, fps)
            sampler = _Sampler(
                container, stream, path, targets, span[0], seek_gap, end_tolerance, seek=seek
            )
            try:
                frames, times = sampler.run()
            except MediaError:
                if not sampler.seeked:
                    raise
                seek = False  # some decoders fail after a seek: one straight pass instead
                continue
            except _EndsEarly as early:
                covered = (early.end - span[0]) / max(span[1] - span[0], 1e-9)
                if covered < min_coverage:
                    raise MediaError(
                        path,
                        f"video frames stop at {early.end:.2f} s but the file says the video "
                        f"runs to {span[1]:.2f} s: the file is truncated or damaged",
                    ) from None
                span = (span[0], early.end)
                continue
            rate = stream.average_rate or stream.guessed_rate
            return VideoFrames(
                frames=frames,
                times=times,
                fps=float(rate) if rate else float(len(targets) / max(span[1] - span[0], 1e-6)),
                duration=span[1] - span[0],
                truncated=stated is not None and span != stated,
            )
    raise MediaError(path, "video frames end earlier than the file states, even on a second pass")


class _EndsEarly(Exception):  # control flow only, never leaves this module
    """The decodable frames end (at ``end`` seconds) before the last target."""

    def __init__(self, end: float) -> None:
        self.end = end


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(
            path, f"cannot be opened as a media file: corrupt, truncated or not a video ({exc})"
        ) from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise MediaError(path, f"no video stream (streams found: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise MediaError(path, "the video stream's codec is not supported by this FFmpeg build")
    return stream


def _stated_span(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[float, float] | None:
    """(start, end) in seconds from the headers, preferring the video stream's own numbers."""
    tb = stream.time_base
    if stream.start_time is not None:
        start = float(stream.start_time * tb)
    elif container.start_time is not None:
        start = container.start_time / av.time_base
    else:
        start = 0.0
    if stream.duration:
        return start, start + float(stream.duration * tb)
    if container.duration:
        first = container.start_time / av.time_base if container.start_time is not None else 0.0
        end = first + container.duration / av.time_base
        if end > start:
            return start, end
    return None


def _scanned_span(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> tuple[float, float]:
    times = [_frame_time(frame) for frame in _decode(container, stream, path)]
    times = [t for t in times if t is not None]
    if not times:
        raise MediaError(path, "no decodable video frames")
    if len(times) == 1:  # a photo (JPEG, PNG, ...) decodes as a one-frame stream of no length
        raise MediaError(path, "a single frame (a still image?), not a video")
    step = float(1 / stream.average_rate) if stream.average_rate else 0.0
    return times[0], times[-1] + step


def _targets(start: float, end: float, num_frames: int, fps: float | None) -> np.ndarray:
    span = max(end - start, 0.0)
    if fps is None:
        return start + (np.arange(num_frames) + 0.5) * span / num_frames
    count = max(1, min(num_frames, math.ceil(span * fps)))
    return start + np.arange(count) / fps


def _frame_time(frame: av.VideoFrame) -> float | None:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    if frame.dts is not None and frame.time_base is not None:
        return float(frame.dts * frame.time_base)
    return None


def _decode(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    path: Path,
    wanted: Callable[[float | None, float], bool] | None = None,
) -> Iterator[av.VideoFrame]:
    """Decoded frames; a decoder or demuxer failure becomes a MediaError naming the file.

    With ``wanted(time, after)`` (a packet's presentation time and that of the frame shown
    after it), the decoder skips a packet's frame when ``wanted`` says no and no other frame
    is predicted from it; reference frames are always decoded, so every frame that comes
    out is exactly what a full decode gives.
    """
    codec = stream.codec_context
    try:
        if wanted is None:
            yield from container.decode(stream)
            return
        seconds = float(stream.time_base)
        for packet, time, after in _timed_packets(container.demux(stream), seconds):
            codec.skip_frame = "DEFAULT" if wanted(time, after) else "NONREF"
            yield from codec.decode(packet)
    except av.error.FFmpegError as exc:
        raise MediaError(path, f"corrupt video data ({exc})") from None


def _timed_packets(
    packets: Iterable[av.Packet], seconds: float
) -> Iterator[tuple[av.Packet, float | None, float]]:
    """Each packet with its presentation time (``pts × seconds``) and the next time shown
    after it (inf when none) among :data:`REORDER_WINDOW` packets on each side."""
    ahead: deque[tuple[av.Packet, float | None]] = deque()
    behind: deque[float] = deque(maxlen=REORDER_WINDOW)

    def hand_out() -> tuple[av.Packet, float | None, float]:
        packet, time = ahead.popleft()
        if time is None:
            return packet, None, math.inf
        later = [t for t in (*behind, *(t for _, t in ahead)) if t is not None and t > time]
        behind.append(time)
        return packet, time, min(later, default=math.inf)

    for packet in packets:
        ahead.append((packet, None if packet.pts is None else packet.pts * seconds))
        if len(ahead) > REORDER_WINDOW:
            yield hand_out()
    while ahead:
        yield hand_out()


class _Sampler:
    """Walks the stream once, seeking over long gaps, keeping the frame on screen at each target."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        path: Path,
        targets: np.ndarray,
        start: float,
        seek_gap: float,
        end_tolerance: float,
        *,
        seek: bool = True,
    ) -> None:
        self.container = container
        self.stream = stream
        self.path = path
        self.targets = targets
        self.start = start
        self.seek_gap = seek_gap if seek else math.inf
        self.end_tolerance = end_tolerance
        self.frames: np.ndarray | None = None  # [T, H, W, 3], allocated at the first kept frame
        self.times = np.zeros(len(targets), dtype=np.float64)
        self.size: tuple[int, int] | None = None  # (width, height) of the first kept frame
        self.rotate_tag = _rotate_tag(stream)
        self.last: tuple[float, av.VideoFrame] | None = None  # the latest decoded frame
        self.step = _step(stream)
        self.margin = 2 * self.step  # slack for decode-vs-display order around key frames
        self.keyframes = _keyframe_times(stream) if seek else None
        self.seeked = False
        self._converted: tuple[av.VideoFrame | None, np.ndarray | None] = (None, None)

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.targets)
        i = 0
        prev: tuple[float, av.VideoFrame] | None = None
        position = self.start  # time of the latest decoded frame
        seeked_for = -1  # seek at most once per target, so a seek that lands early cannot loop
        while i < n:
            if i > seeked_for and self._worth_seeking(self.targets[i], position):
                seeked_for = i
                if self._seek(self.targets[i]):
                    prev = None
            jumped = False
            for frame in _decode(self.container, self.stream, self.path, self._wanted):
                t = _frame_time(frame)
                if t is None:
                    t = position + self.step
                while i < n and self.targets[i] < t - 1e-6:
                    self._keep(i, *(prev if prev is not None else (t, frame)))
                    i += 1
                prev = self.last = (t, frame)
                position = t
                if i == n:
                    break
                if i > seeked_for and self._worth_seeking(self.targets[i], t):
                    jumped = True
                    break
            if not jumped:
                self._finish(i)
                break
        return self.frames, self.times

    def _wanted(self, time: float | None, after: float) -> bool:
        """Whether the frame shown from ``time`` until ``after`` may be kept (a target falls
        in that span, or its time is unknown)."""
        if time is None:
            return True
        k = int(np.searchsorted(self.targets, time - _TIME_SLACK))
        return k < len(self.targets) and self.targets[k] < after + _TIME_SLACK

    def _worth_seeking(self, target: float, position: float) -> bool:
        """Seek when it skips decoding: a key frame lies between here and the target."""
        if self.keyframes is None:  # no index: only jump over long gaps
            return target - position > self.seek_gap
        k = bisect.bisect_right(self.keyframes, target - self.margin) - 1
        return k >= 0 and self.keyframes[k] > position + self.margin

    def _finish(self, i: int) -> None:
        """End of stream: the remaining targets get the last frame, unless frames stop early."""
        if i == len(self.targets):
            return
        if self.last is None:
            raise MediaError(self.path, "no decodable video frames")
        last_time = self.last[0]
        tolerance = max(self.end_tolerance, 2 * self.step)
        if self.targets[-1] > last_time + tolerance:
            raise _EndsEarly(last_time + self.step)
        for j in range(i, len(self.targets)):
            self._keep(j, *self.last)

    def _keep(self, i: int, time: float, frame: av.VideoFrame) -> None:
        if self._converted[0] is not frame:
            self._converted = (frame, self._to_rgb(frame))
        image = self._converted[1]
        if self.frames is None:
            self.frames = np.empty((len(self.targets), *image.shape), image.dtype)
        self.frames[i] = image
        self.times[i] = time

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        if self.size is None:
            self.size = (frame.width, frame.height)
        width, height = self.size  # a mid-stream size change is scaled back to the first size
        image = frame.to_ndarray(format="rgb24", width=width, height=height)
        rotation = frame.rotation or self.rotate_tag
        quarter_turns = round(rotation / 90) % 4
        if quarter_turns:
            image = np.ascontiguousarray(np.rot90(image, quarter_turns))
        return image

    def _seek(self, target: float) -> bool:
        offset = int((target - self.margin) / self.stream.time_base)
        try:
            self.container.seek(max(offset, 0), stream=self.stream, backward=True)
        except av.error.FFmpegError:
            self.seek_gap, self.keyframes = math.inf, None  # not seekable: decode straight on
            return False
        self.seeked = True
        return True


def _step(stream: av.VideoStream) -> float:
    """Seconds between frames (nominal)."""
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / rate) if rate else 0.04


def _keyframe_times(stream: av.VideoStream) -> list[float] | None:
    """Key frame times from the container's index (MP4, MOV, AVI), or None when it has none.

    Index times are decode times; :attr:`_Sampler.margin` absorbs the small reorder delay.
    """
    times = [float(e.timestamp * stream.time_base) for e in stream.index_entries if e.is_keyframe]
    return times if len(times) > 1 else None


def _rotate_tag(stream: av.VideoStream) -> int:
    """Counter-clockwise degrees from an old-style ``rotate`` tag (which is clockwise)."""
    try:
        return -int(float(stream.metadata.get("rotate", 0)))
    except ValueError:
        return 0
