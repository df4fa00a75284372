"""Checks before any clip is preprocessed: a recipe the data cannot feed is refused at once,
not after every clip has failed one by one."""

from __future__ import annotations

from typing import Any

from avsent.contracts import Clip
from avsent.data.features import uses_audio, uses_video
from avsent.errors import ModalityMismatchError
from avsent.media.probe import stream_kinds

#: clips whose headers are read; a corpus is one modality throughout, so a few tell
PROBED_CLIPS = 3
#: the recipe to suggest when the data lacks a modality
INSTEAD = {"video": "drsn-audio", "audio": "i3dd-visual"}


def check_modalities(config: Any, clips: list[Clip]) -> None:
    """Refuse when none of the first clips that open has a stream the recipe needs."""
    probed = [(clip, kinds) for clip in clips[:PROBED_CLIPS] if (kinds := stream_kinds(clip.path))]
    if not probed:  # unreadable files: preprocessing names each with its problem
        return
    needed = [
        m for m, used in (("audio", uses_audio(config)), ("video", uses_video(config))) if used
    ]
    for modality in needed:
        if any(modality in kinds for _, kinds in probed):
            continue
        clip, kinds = probed[0]
        first = f"the first {len(probed)} clips have" if len(probed) > 1 else "the first clip has"
        raise ModalityMismatchError(
            f"{first} no {modality} stream in dataset {config.data.dataset.name!r} (e.g. "
            f"{clip.path}: streams found: {', '.join(sorted(kinds))}); recipe "
            f"{config.recipe!r} needs {modality}: train `{INSTEAD[modality]}` instead (or "
            f"--set {modality}.name=none)"
        )
