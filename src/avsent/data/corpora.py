"""File-name conventions of public emotion corpora, and their labels in our seven classes.

Each parser reads one file's path and returns the corpus's own emotion word and the
speaker, or ``None`` when the name does not follow the convention. The ``DEFAULT_MAPS``
say which of our classes (:data:`avsent.labels.EMOTIONS`) each corpus word becomes;
words without a counterpart (RAVDESS *calm*, EmoDB *boredom*, MEAD *contempt*) map to
nothing and are left out unless a user maps them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import attrs


@attrs.frozen
class Parsed:
    emotion: str  #: the corpus's own word, e.g. "calm"
    speaker: str


Parser = Callable[[Path], "Parsed | None"]

# -- RAVDESS: Actor_01/03-01-05-01-02-01-01.mp4 ------------------------------------------
# modality-vocal channel-emotion-intensity-statement-repetition-actor
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def parse_ravdess(
    path: Path,
    modalities: tuple[str, ...] = ("audio-video", "audio-only"),
    channels: tuple[str, ...] = ("speech",),
) -> Parsed | None:
    """``03-01-05-01-02-01-12.wav`` → angry, actor 12 (``None`` for other modalities/channels)."""
    m = _RAVDESS.match(path.stem)
    if m is None or m[3] not in RAVDESS_EMOTIONS:
        return None
    if RAVDESS_MODALITIES.get(m[1]) not in modalities:
        return None
    if RAVDESS_CHANNELS.get(m[2]) not in channels:
        return None
    return Parsed(RAVDESS_EMOTIONS[m[3]], f"actor{m[7]}")


# -- CREMA-D: 1001_DFA_ANG_XX.flv --------------------------------------------------------
# actor_sentence_emotion_level
CREMAD_EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2}|\d\d)$")


def parse_cremad(path: Path) -> Parsed | None:
    m = _CREMAD.match(path.stem)
    if m is None or m[3] not in CREMAD_EMOTIONS:
        return None
    return Parsed(CREMAD_EMOTIONS[m[3]], m[1])


# -- EmoDB: 03a01Fa.wav ------------------------------------------------------------------
# speaker (2 digits), text code (3), emotion letter (German initial), version letter
EMODB_EMOTIONS = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
_EMODB = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z]+)$")


def parse_emodb(path: Path) -> Parsed | None:
    m = _EMODB.match(path.stem)
    if m is None or m[3] not in EMODB_EMOTIONS:
        return None
    return Parsed(EMODB_EMOTIONS[m[3]], m[1])


# -- MEAD: M030_front_angry_level3_001.mp4, M030_crop_sad.mp4, M030/video/front/angry/level_3/001.mp4
MEAD_EMOTIONS = (
    "angry",
    "contempt",
    "disgusted",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprised",
)
MEAD_VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60", "crop")
_MEAD_SPEAKER = re.compile(r"^[MW]\d{3}$")


def parse_mead(path: Path, views: tuple[str, ...] = ("front", "crop")) -> Parsed | None:
    """Speaker from the first ``M###``/``W###`` token, emotion and view from name or folders.

    Both the flat names of released samples (``M030_front_angry_level3_001``) and the
    corpus's own tree (``M030/video/front/angry/level_3/001.mp4``) are understood. A
    name without a view (``M030_sad_3_001``) counts as any view.
    """
    tokens = path.stem.split("_")
    parts = [*path.parent.parts, *tokens]
    speaker = next((p for p in parts if _MEAD_SPEAKER.match(p)), None)
    emotion = next((p for p in reversed(parts) if p in MEAD_EMOTIONS), None)
    if speaker is None or emotion is None:
        return None
    joined = [*parts, *("_".join(pair) for pair in itertools.pairwise(parts))]
    view = next((p for p in joined if p in MEAD_VIEWS), None)
    if view is not None and view not in views:
        return None
    return Parsed(emotion, speaker)


# -- our classes ---------------------------------------------------------------------------

DEFAULT_MAPS: dict[str, dict[str, str]] = {
    "ravdess": {
        "neutral": "neutral",
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "fearful": "fear",
        "disgust": "disgusted",
        "surprised": "surprise",
    },
    "crema-d": {
        "anger": "angry",
        "disgust": "disgusted",
        "fear": "fear",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
    },
    "emodb": {
        "anger": "angry",
        "disgust": "disgusted",
        "fear": "fear",
        "happiness": "happy",
        "sadness": "sad",
        "neutral": "neutral",
    },
    "mead": {
        "angry": "angry",
        "disgusted": "disgusted",
        "fear": "fear",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
        "surprised": "surprise",
    },
}

#: every word each corpus uses, for checking a user's ``label_map`` keys
CORPUS_WORDS: dict[str, tuple[str, ...]] = {
    "ravdess": tuple(RAVDESS_EMOTIONS.values()),
    "crema-d": tuple(CREMAD_EMOTIONS.values()),
    "emodb": tuple(EMODB_EMOTIONS.values()),
    "mead": MEAD_EMOTIONS,
}
