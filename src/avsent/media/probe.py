"""Which kinds of stream a media file holds, from its headers alone (nothing is decoded)."""

from __future__ import annotations

from pathlib import Path

import av


def stream_kinds(path: Path) -> frozenset[str] | None:
    """``{"audio", "video", …}`` of ``path``'s streams; ``None`` when it cannot be opened
    (preprocessing reports such a file with the reason, so a probe only needs the kinds)."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return frozenset(s.type for s in container.streams)
    except (av.error.FFmpegError, OSError):
        return None
