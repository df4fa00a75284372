"""Dataset plugins: where clips come from and what their labels mean.

* ``synthetic`` — the default: generated talking faces (see :mod:`avsent.data.synthetic`);
* ``folder`` and ``manifest`` — a user's own recordings;
* ``ravdess``, ``crema-d``, ``emodb``, ``mead`` — public corpora by their file names.

Class names are always the paper's classes (:data:`~avsent.labels.EMOTIONS`) that occur
in the clips, in the paper's order, followed by any other labels in alphabetical order; a
``folder`` or ``manifest`` dataset may instead fix its class list with ``classes``. The
clip list is checked (:func:`~avsent.data.manifest.validate_clips`) when first read, so a
bad dataset fails before any preprocessing, with every problem listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import attrs
from attrs import validators as v

from avsent.contracts import Clip
from avsent.data import corpora
from avsent.data.manifest import DatasetProblems, read_manifest, validate_clips
from avsent.data.synthetic import SyntheticBenchmarkConfig, SyntheticConfig, generate
from avsent.errors import ConfigError
from avsent.hookspecs import hookimpl
from avsent.labels import EMOTIONS

MEDIA_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mov",
    ".mkv",
    ".webm",
    ".flv",
    ".mpg",
    ".wav",
    ".mp3",
    ".m4a",
    ".flac",
    ".ogg",
    ".aac",
)
DROP = "none"  #: a ``label_map`` value that leaves a label out


def order_classes(labels: Iterable[str]) -> tuple[str, ...]:
    """The paper's classes present, in paper order, then any other labels sorted."""
    present = set(labels)
    return tuple(e for e in EMOTIONS if e in present) + tuple(sorted(present - set(EMOTIONS)))


@attrs.define
class Skipped:
    """A media file left out on purpose, and why (e.g. RAVDESS *calm* has no class).

    ``group`` names what files like it share, for the count a user sees
    (``"calm clips left out: no class; …"`` → ``"60 calm clips left out: …"``)."""

    path: Path
    reason: str
    group: str = ""


def skip_notes(skipped: Iterable[Skipped]) -> list[str]:
    """One line per group of skipped files, with its count, in the order first met."""
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.group or s.reason] = counts.get(s.group or s.reason, 0) + 1
    return [f"{n} {group if n > 1 else _singular(group)}" for group, n in counts.items()]


_SINGULAR = {"clips": "clip", "copies": "copy", "files": "file"}


def _singular(group: str) -> str:
    words = group.split(" ")
    i = next((i for i, w in enumerate(words) if w in _SINGULAR), None)
    return group if i is None else " ".join([*words[:i], _SINGULAR[words[i]], *words[i + 1 :]])


class ClipSource:
    """A :class:`~avsent.contracts.DatasetSource` that scans once, on first use, and checks.

    ``scan`` returns (clips, where each came from, problems found while reading, skipped).
    """

    def __init__(
        self,
        name: str,
        scan: Callable[[], tuple[list[Clip], list[str] | None, list[str], list[Skipped]]],
        classes: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self._scan = scan
        self._classes = classes
        self.skipped: list[Skipped] = []

    @cached_property
    def _checked(self) -> tuple[list[Clip], tuple[str, ...]]:
        clips, locations, problems, self.skipped = self._scan()
        class_names = self._classes or order_classes(c.label for c in clips)
        validate_clips(clips, class_names, self.name, locations=locations, problems=problems)
        return clips, class_names

    def clips(self) -> list[Clip]:
        return list(self._checked[0])

    @property
    def notes(self) -> list[str]:
        """What was left out on purpose, counted (``"60 calm clips left out: no class; …"``),
        so a user sees it without reading ``skipped`` file by file; and, without a fixed
        class list, the labels that are none of the paper's classes (a typo such as
        ``hapy`` would otherwise train as a class of its own, unnoticed)."""
        foreign = [name for name in self.class_names if name not in EMOTIONS]  # scans
        notes = skip_notes(self.skipped)
        if foreign and not self._classes:
            notes.append(
                f"labels that are none of the paper's classes ({', '.join(EMOTIONS)}), each "
                f"trained as a class of its own: {', '.join(foreign)}; fix the list with "
                "data.dataset.classes or rename with data.dataset.label_map"
            )
        return notes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._checked[1]


# -- synthetic ------------------------------------------------------------------------------


def synthetic_dataset(config: SyntheticConfig) -> ClipSource:
    return ClipSource("synthetic", lambda: (generate(config), None, [], []), EMOTIONS)


# -- the user's own data ---------------------------------------------------------------------


def _check_label_map(instance: Any, attribute: attrs.Attribute, value: dict[str, str]) -> None:
    for key, target in value.items():
        if not isinstance(key, str) or not isinstance(target, str) or not target:
            raise ValueError(
                f"label_map maps labels to class names (or {DROP!r}), got {key!r} → {target!r}",
                attribute,
            )


def _root_dir(root: str, field: str) -> Path:
    if not root:
        raise ConfigError(field, "set the data folder, e.g. --set data.dataset.root=/data/mine")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetProblems(str(path), ["folder not found"])
    return path


def _media_files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted)


@attrs.define
class FolderConfig:
    """``root/<label>/**/<clip>``: the sub-folder name is the label."""

    root: str = ""
    label_map: dict[str, str] = attrs.field(factory=dict, validator=_check_label_map)
    #: fixed class list (unknown labels and empty classes are then errors); () = from data
    classes: tuple[str, ...] = ()
    #: regex on the file name (without extension); group ``speaker`` or group 1 is the speaker
    speaker_pattern: str = attrs.field(default="", validator=lambda i, a, val: _compile(val))
    extensions: tuple[str, ...] = MEDIA_EXTENSIONS


def _compile(pattern: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"speaker_pattern is not a valid regular expression: {exc}") from None
    if compiled.groups == 0:
        raise ValueError("speaker_pattern needs a group for the speaker, e.g. '^(\\w+?)_'")
    return compiled


def _speaker(pattern: re.Pattern[str] | None, path: Path) -> str | None:
    if pattern is None:
        return None
    m = pattern.search(path.stem)
    if m is None:
        return None
    return m.groupdict().get("speaker") or m.group(1)


def _dropped(path: Path, label: str) -> Skipped:
    reason = f"label {label!r} mapped to {DROP!r}"
    return Skipped(path, reason, f"{label} clips left out: {reason}")


def folder_dataset(config: FolderConfig) -> ClipSource:
    def scan() -> tuple[list[Clip], None, list[str], list[Skipped]]:
        root = _root_dir(config.root, "data.dataset.root")
        pattern = _compile(config.speaker_pattern)
        clips, problems, skipped = [], [], []
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            problems.append(f"{root}: no label sub-folders (expected {root}/<label>/<clips>)")
        for folder in folders:
            label = config.label_map.get(folder.name, folder.name)
            for path in _media_files(folder, config.extensions):
                if label == DROP:
                    skipped.append(_dropped(path, folder.name))
                    continue
                speaker = _speaker(pattern, path)
                if pattern is not None and speaker is None:
                    problems.append(f"{path}: speaker_pattern does not match the file name")
                clips.append(Clip(path, label, speaker))
        return clips, None, problems, skipped

    return ClipSource(f"folder {config.root}", scan, tuple(config.classes))


@attrs.define
class ManifestConfig:
    """A CSV (header ``path,label,speaker,split``) or JSONL file listing the clips."""

    path: str = ""
    label_map: dict[str, str] = attrs.field(factory=dict, validator=_check_label_map)
    classes: tuple[str, ...] = ()  #: fixed class list; () = the labels found, paper order first


def manifest_dataset(config: ManifestConfig) -> ClipSource:
    def scan() -> tuple[list[Clip], list[str], list[str], list[Skipped]]:
        if not config.path:
            raise ConfigError(
                "data.dataset.path", "set the manifest, e.g. --set data.dataset.path=clips.csv"
            )
        clips, locations, problems = read_manifest(config.path)
        kept, kept_locations, skipped = [], [], []
        for clip, loc in zip(clips, locations, strict=True):
            label = config.label_map.get(clip.label, clip.label)
            if label == DROP:
                skipped.append(_dropped(clip.path, clip.label))
                continue
            kept.append(attrs.evolve(clip, label=label))
            kept_locations.append(loc)
        return kept, kept_locations, problems, skipped

    return ClipSource(f"manifest {config.path}", scan, tuple(config.classes))


# -- public corpora --------------------------------------------------------------------------


def _check_corpus_map(instance: Any, attribute: attrs.Attribute, value: dict[str, str]) -> None:
    _check_label_map(instance, attribute, value)
    words = corpora.CORPUS_WORDS[instance.corpus]
    unknown = sorted(set(value) - set(words))
    if unknown:
        raise ValueError(
            f"label_map keys must be {instance.corpus} labels ({', '.join(words)}), got "
            f"{', '.join(unknown)}",
            attribute,
        )


@attrs.define
class CorpusConfig:
    """What every corpus dataset takes; subclasses set ``corpus`` and their extensions."""

    corpus: ClassVar[str] = ""
    root: str = ""
    #: corpus label → our class (or "none"), laid over the documented default mapping
    label_map: dict[str, str] = attrs.field(factory=dict, validator=_check_corpus_map)
    #: keep labels without a class under their own name (e.g. "calm") instead of leaving them out
    include_unmapped: bool = False
    extensions: tuple[str, ...] = ()


@attrs.define
class RavdessConfig(CorpusConfig):
    """RAVDESS ``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4``; by default the audio-video and
    audio-only speech files (the video-only copies repeat the audio-video takes).

    Any media extension: the corpus ships MP4 and WAV, and converted copies (FLAC, …)
    keep the names. A take present as audio-video and audio-only is used once."""

    corpus: ClassVar[str] = "ravdess"
    extensions: tuple[str, ...] = MEDIA_EXTENSIONS
    modalities: tuple[str, ...] = attrs.field(
        default=("audio-video", "audio-only"),
        validator=v.deep_iterable(v.in_(tuple(corpora.RAVDESS_MODALITIES.values()))),
    )
    channels: tuple[str, ...] = attrs.field(
        default=("speech",),
        validator=v.deep_iterable(v.in_(tuple(corpora.RAVDESS_CHANNELS.values()))),
    )


@attrs.define
class CremaDConfig(CorpusConfig):
    """CREMA-D ``ActorID_Sentence_Emotion_Level`` (``1001_DFA_ANG_XX.flv``)."""

    corpus: ClassVar[str] = "crema-d"
    extensions: tuple[str, ...] = (".flv", ".mp4", ".wav", ".mp3")


@attrs.define
class EmoDBConfig(CorpusConfig):
    """Berlin EmoDB ``03a01Fa.wav``: speaker, text, emotion letter, version; audio only."""

    corpus: ClassVar[str] = "emodb"
    extensions: tuple[str, ...] = (".wav",)


@attrs.define
class MeadConfig(CorpusConfig):
    """MEAD ``M030_front_angry_level3_001.mp4``, ``M030_crop_sad.mp4`` or the corpus tree
    ``M030/video/front/angry/level_3/001.mp4``; by default frontal views and face crops."""

    corpus: ClassVar[str] = "mead"
    extensions: tuple[str, ...] = (".mp4", ".m4a", ".wav")
    views: tuple[str, ...] = attrs.field(
        default=("front", "crop"), validator=v.deep_iterable(v.in_(corpora.MEAD_VIEWS))
    )


Check = Callable[[Path], "str | None"]  #: a file → the problem with it, or None
Refine = Callable[[list[Clip], list[Skipped]], list[Clip]]  #: drops clips, noting why


def corpus_dataset(
    corpus: str,
    parse: Callable[[Path, Any], corpora.Parsed | None],
    check: Check | None = None,
    refine: Refine | None = None,
) -> Callable[[Any], ClipSource]:
    """A factory that scans a corpus folder with ``parse`` and maps its labels.

    ``check`` reports a parsed file that contradicts the corpus layout (a problem, not a
    skip); ``refine`` drops clips the parse alone cannot judge (duplicate takes)."""

    def factory(config: Any) -> ClipSource:
        def scan() -> tuple[list[Clip], None, list[str], list[Skipped]]:
            root = _root_dir(config.root, "data.dataset.root")
            mapping = {**corpora.DEFAULT_MAPS[corpus], **config.label_map}
            clips, problems, skipped = [], [], []
            for path in _media_files(root, config.extensions):
                parsed = parse(path, config)
                if parsed is None:
                    skipped.append(Skipped(path, f"not a {corpus} file name (or not selected)",
                                           f"files left out: not {corpus} names or not selected"))  # fmt: skip
                    continue
                problem = check(path) if check is not None else None
                if problem is not None:
                    problems.append(f"{path}: {problem}")
                label = mapping.get(parsed.emotion)
                if label is None and config.include_unmapped:
                    label = parsed.emotion
                if label is None or label == DROP:
                    why = f"{corpus} label {parsed.emotion!r} has no class"
                    hint = "no class; map them with data.dataset.label_map"
                    skipped.append(Skipped(path, why, f"{parsed.emotion} clips left out: {hint}"))
                    continue
                clips.append(Clip(path, label, parsed.speaker))
            if refine is not None:
                clips = refine(clips, skipped)
            return clips, None, problems, skipped

        return ClipSource(f"{corpus} {config.root}", scan)

    return factory


_ACTOR_FOLDER = re.compile(r"^Actor_(\d\d)$")


def ravdess_actor_check(path: Path) -> str | None:
    """An ``Actor_NN`` folder must hold only actor NN's files (the speaker comes from the
    name; a misfiled copy would put one actor's voice in another's fold)."""
    folder = _ACTOR_FOLDER.match(path.parent.name)
    actor = path.stem[-2:]
    if folder is not None and folder[1] != actor:
        return f"actor {actor} in the file name, but the folder is {path.parent.name}"
    return None


def ravdess_one_copy_per_take(clips: list[Clip], skipped: list[Skipped]) -> list[Clip]:
    """Keep the audio-video file of a take that is also present audio-only: both hold the
    same recording, and using both would count it twice."""
    audio_video = {c.path.stem[3:] for c in clips if c.path.stem.startswith("01-")}
    kept = []
    for clip in clips:
        if clip.path.stem.startswith("03-") and clip.path.stem[3:] in audio_video:
            skipped.append(Skipped(clip.path, "audio-only copy of an audio-video take",
                                   "audio-only copies left out: the audio-video take is used"))  # fmt: skip
            continue
        kept.append(clip)
    return kept


@hookimpl
def register_datasets(register):
    register.dataset(
        "synthetic",
        synthetic_dataset,
        config=SyntheticConfig,
        description="generated talking faces with emotional voices (built-in default)",
    )
    register.dataset(
        "synthetic-benchmark",
        synthetic_dataset,
        config=SyntheticBenchmarkConfig,
        description="the same generator at RAVDESS's scale: 24 speakers, 1,400 clips",
    )
    register.dataset(
        "folder", folder_dataset, config=FolderConfig, description="root/<label>/<clips>"
    )
    register.dataset(
        "manifest",
        manifest_dataset,
        config=ManifestConfig,
        description="CSV/JSONL with path, label, speaker, split",
    )
    register.dataset(
        "ravdess",
        corpus_dataset(
            "ravdess",
            lambda p, c: corpora.parse_ravdess(p, tuple(c.modalities), tuple(c.channels)),
            check=ravdess_actor_check,
            refine=ravdess_one_copy_per_take,
        ),
        config=RavdessConfig,
        description="RAVDESS by file name (calm left out)",
    )
    register.dataset(
        "crema-d",
        corpus_dataset("crema-d", lambda p, c: corpora.parse_cremad(p)),
        config=CremaDConfig,
        description="CREMA-D by file name",
    )
    register.dataset(
        "emodb",
        corpus_dataset("emodb", lambda p, c: corpora.parse_emodb(p)),
        config=EmoDBConfig,
        description="Berlin EmoDB by file name (boredom left out)",
    )
    register.dataset(
        "mead",
        corpus_dataset("mead", lambda p, c: corpora.parse_mead(p, tuple(c.views))),
        config=MeadConfig,
        description="MEAD by file name or folder tree (contempt left out)",
    )
