"""Train/validation/test splits, including the speaker-independent ones emotion work needs.

A model that has heard a speaker in training recognises the *speaker* as much as the
emotion, so ``speaker-kfold`` and ``loso`` (leave one speaker out) keep every speaker in
exactly one part. Their validation part is speaker-independent too: whole speakers from
the training side, as close to ``val_fraction`` of its clips as whole speakers allow (when only one training speaker is
left, a stratified share of its clips instead, and :attr:`Split.notes` says so).

Every split is deterministic in (clips, config, seed) and saved as JSON in the run folder
with each clip's path, label, speaker and content hash, so a run documents exactly what it
saw. Paths are saved relative to the folder all clips share (the data's root), so a run
whose data moved — another machine, another home folder — still recognises its clips
(:meth:`Split.difference`), while a clip with other content does not pass.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from avsent.config import atomic_write_text
from avsent.contracts import Clip
from avsent.errors import SplitError
from avsent.run_config import SplitConfig

PARTS = ("train", "val", "test")
ContentHash = Callable[[Path], str]  #: a file → the hash of its bytes


@attrs.frozen
class Split:
    """Indices into ``clips`` for each part; ``fold`` counts from 0."""

    train: list[int]
    val: list[int]
    test: list[int]
    method: str = "random"
    fold: int = 0
    clips: tuple[Clip, ...] = ()
    notes: tuple[str, ...] = ()
    #: sha256 of each clip's bytes (None: unreadable when split); () = not recorded, as in
    #: split files written before hashes were (their clips are checked by name and label)
    hashes: tuple[str | None, ...] = ()

    def part(self, name: str) -> list[Clip]:
        """The clips of ``"train"``, ``"val"`` or ``"test"``."""
        return [self.clips[i] for i in getattr(self, name)]

    def speakers(self, name: str) -> set[str]:
        return {c.speaker for c in self.part(name) if c.speaker is not None}

    def matches(self, clips: Sequence[Clip], content_hash: ContentHash | None = None) -> bool:
        """Whether ``clips`` is the list this split indexes (see :meth:`difference`)."""
        return self.difference(clips, content_hash) is None

    def difference(
        self, clips: Sequence[Clip], content_hash: ContentHash | None = None
    ) -> str | None:
        """``None`` when ``clips`` is the list this split indexes, else the first difference.

        The same list means the same files in the same order, named relative to the folder
        they share (so the data may have moved), with the same labels and — given
        ``content_hash`` and recorded :attr:`hashes` — the same bytes.
        """
        _, then = relative_names([c.path for c in self.clips])
        _, now = relative_names([c.path for c in clips])
        if then != now:
            return _listing_change(then, now)
        for name, old, new in zip(now, self.clips, clips, strict=True):
            if old.label != new.label:
                return f"{name} is labelled {new.label!r}, was {old.label!r}"
        if content_hash is None or not self.hashes:
            return None
        for name, clip, old_hash in zip(now, clips, self.hashes, strict=True):
            new_hash = _hash_or_none(content_hash, clip.path)
            if None not in (old_hash, new_hash) and new_hash != old_hash:
                return f"{name} has other content than when split"
        return None

    def to_dict(self) -> dict[str, Any]:
        where = {i: name for name in PARTS for i in getattr(self, name)}
        root, names = relative_names([c.path for c in self.clips])
        hashes = self.hashes or (None,) * len(self.clips)
        return {
            "method": self.method,
            "fold": self.fold,
            "notes": list(self.notes),
            "counts": {name: len(getattr(self, name)) for name in PARTS},
            "root": str(root),  #: where the clips were; their paths are relative to it
            "clips": [
                {
                    "path": name,
                    "sha256": digest,
                    "label": c.label,
                    "speaker": c.speaker,
                    "part": where.get(i),
                }
                for i, (c, name, digest) in enumerate(zip(self.clips, names, hashes, strict=True))
            ],
        }

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        try:
            data = json.loads(Path(path).read_text())
            records = data["clips"]
            root = Path(data.get("root", ""))  # absent: absolute paths (older split files)
            clips = tuple(Clip(root / r["path"], r["label"], r.get("speaker")) for r in records)
            hashes = tuple(r.get("sha256") for r in records)
            parts = {
                name: [i for i, r in enumerate(records) if r.get("part") == name] for name in PARTS
            }
            return cls(
                **parts,
                method=data["method"],
                fold=int(data["fold"]),
                clips=clips,
                notes=tuple(data.get("notes", ())),
                hashes=hashes if any(hashes) else (),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SplitError(f"{path}: not a readable split file ({exc})") from None


# -- public helpers ----------------------------------------------------------------------


def relative_names(paths: Sequence[str | Path]) -> tuple[Path, list[str]]:
    """The deepest folder holding every path, and each path relative to it (POSIX form):
    names that stay the same when the whole data folder moves."""
    if not paths:
        return Path(), []
    absolute = [os.path.abspath(p) for p in paths]
    root = Path(os.path.commonpath([os.path.dirname(p) for p in absolute]))
    return root, [Path(p).relative_to(root).as_posix() for p in absolute]


def content_hashes(clips: Sequence[Clip], content_hash: ContentHash) -> list[str | None]:
    """Each clip's ``content_hash`` (e.g. the feature cache's), ``None`` for a clip that
    cannot be read: preprocessing reports those."""
    return [_hash_or_none(content_hash, clip.path) for clip in clips]


def speakers_of(clips: Sequence[Clip], method: str) -> list[str]:
    """The sorted speaker ids; an error naming clips without one."""
    missing = [c.path for c in clips if not c.speaker]
    if missing:
        raise SplitError(
            f"split method {method!r} keeps speakers apart, but {len(missing)} of {len(clips)} "
            f"clips have no speaker (e.g. {missing[0]}); give speakers (manifest column "
            "'speaker', folder dataset 'speaker_pattern') or use method 'random'"
        )
    return sorted({c.speaker for c in clips if c.speaker})


def speaker_folds(clips: Sequence[Clip], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` groups of speakers with about equal clip counts (shuffled by ``seed``)."""
    speakers = speakers_of(clips, "speaker-kfold")
    if k > len(speakers):
        raise SplitError(
            f"speaker-kfold with {k} folds needs at least {k} speakers, the data has "
            f"{len(speakers)} ({', '.join(speakers)}); lower data.split.folds or use 'loso'"
        )
    counts = defaultdict(int)
    for c in clips:
        counts[c.speaker] += 1
    order = list(np.random.default_rng([seed, 11]).permutation(len(speakers)))
    ranked = sorted(range(len(speakers)), key=lambda i: (-counts[speakers[i]], order[i]))
    groups: list[list[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for i in ranked:  # largest speaker first into the emptiest group
        g = min(range(k), key=lambda j: (totals[j], j))
        groups[g].append(speakers[i])
        totals[g] += counts[speakers[i]]
    return [sorted(g) for g in groups]


def loso_folds(clips: Sequence[Clip]) -> list[str]:
    """One fold per speaker, in sorted order: fold ``i`` tests speaker ``i``."""
    return speakers_of(clips, "loso")


def resolve_method(clips: Sequence[Clip], config: SplitConfig) -> tuple[SplitConfig, str]:
    """``config`` with ``auto`` made concrete, and a note saying what it became and why
    (empty for a method that was given)."""
    if config.method != "auto":
        return config, ""
    speakers = {c.speaker for c in clips}
    # nested: the outer split decides, over all clips, and the inner split follows it
    folds = config.folds if config.outer.fold is None else config.outer.folds
    if None not in speakers and "" not in speakers and len(speakers) >= folds:
        method = "speaker-kfold"
        why = f"every clip has a speaker ({len(speakers)} speakers, {folds} folds)"
    else:
        method = "random"
        why = (
            f"only {len(speakers)} speakers for {folds} folds"
            if None not in speakers and "" not in speakers
            else "not every clip has a speaker"
        )
    return attrs.evolve(config, method=method), f"split method auto → {method}: {why}"


def n_folds(clips: Sequence[Clip], config: SplitConfig, seed: int = 0) -> int:
    """How many folds the method has (1 for ``random`` and ``predefined``); with an outer
    fold (``config.outer``), the folds of the clips outside its test part."""
    config, _ = resolve_method(clips, config)
    if config.outer.fold is not None:
        outer = _outer_split(tuple(clips), config, seed, ())
        clips = [clips[i] for i in sorted(outer.train + outer.val)]
    if config.method == "speaker-kfold":
        return len(speaker_folds(clips, config.folds))
    if config.method == "loso":
        return len(loso_folds(clips))
    return 1


def duplicate_groups(hashes: Sequence[str | None]) -> list[list[int]]:
    """Indices of clips with the same bytes (their :func:`content_hashes`), each group in
    clip order; clips that could not be read (``None``) are left to preprocessing to report."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, digest in enumerate(hashes):
        if digest is not None:
            by_hash[digest].append(i)
    return [group for group in by_hash.values() if len(group) > 1]


def describe_duplicates(clips: Sequence[Clip], groups: Sequence[Sequence[int]]) -> str:
    """One line naming every copy and the clip it copies."""
    copies = [(clips[i].path, clips[g[0]].path) for g in groups for i in g[1:]]
    listed = "; ".join(f"{copy} = {original}" for copy, original in copies)
    verb = (
        "clip is a byte-identical copy" if len(copies) == 1 else "clips are byte-identical copies"
    )
    return f"{len(copies)} {verb} of another: {listed}"


def make_split(
    clips: Sequence[Clip],
    config: SplitConfig,
    seed: int = 0,
    *,
    groups: Sequence[Sequence[int]] = (),
) -> Split:
    """Split ``clips`` by ``config.method``; ``config.fold`` picks the fold of k-fold / LOSO.

    ``groups`` (from :func:`duplicate_groups`) are clips with the same content: only the first
    of each is split, and its copies join its part, so no copy leaks across parts. Without
    groups the split is exactly what it was before groups existed.
    """
    clips = tuple(clips)
    config, note = resolve_method(clips, config)
    if config.outer.fold is not None:
        return _with_note(_nested_split(clips, config, seed, groups), note)
    if not groups:
        return _with_note(_make_split(clips, config, seed), note)
    original = {i: group[0] for group in groups for i in group[1:]}
    kept = [i for i in range(len(clips)) if i not in original]
    inner = _make_split([clips[i] for i in kept], config, seed)
    part_of = {kept[j]: name for name in PARTS for j in getattr(inner, name)}
    for copy, first in original.items():
        if first in part_of:
            part_of[copy] = part_of[first]
    parts = {name: sorted(i for i, p in part_of.items() if p == name) for name in PARTS}
    copies = f"{len(original)} byte-identical copies kept in the part of the clip they copy"
    split = attrs.evolve(inner, **parts, clips=clips, notes=(*inner.notes, copies))
    return _with_note(split, note)


def _outer_split(
    clips: tuple[Clip, ...], config: SplitConfig, seed: int, groups: Sequence[Sequence[int]]
) -> Split:
    """``config.outer``'s split of ``clips``: same method, the outer fold count and fold."""
    outer_config = attrs.evolve(
        _without_outer(config), folds=config.outer.folds, fold=config.outer.fold
    )
    return make_split(clips, outer_config, seed, groups=groups)


def _without_outer(config: SplitConfig) -> SplitConfig:
    return attrs.evolve(config, outer=attrs.evolve(config.outer, fold=None))


def _nested_split(
    clips: tuple[Clip, ...], config: SplitConfig, seed: int, groups: Sequence[Sequence[int]]
) -> Split:
    """The split of the clips outside ``config.outer``'s test part; those clips are in no
    part, so nothing trained, stopped early or scored on this split has seen them."""
    outer = _outer_split(clips, config, seed, groups)
    kept = sorted(outer.train + outer.val)
    position = {i: j for j, i in enumerate(kept)}
    kept_groups = [[position[i] for i in g if i in position] for g in groups]
    inner = make_split([clips[i] for i in kept], _without_outer(config), seed,
                       groups=[g for g in kept_groups if len(g) > 1])  # fmt: skip
    left_out = sorted({c.speaker or "?" for c in outer.part("test")})
    note = (
        f"nested: outer fold {config.outer.fold} of {config.outer.folds} left out "
        f"({len(outer.test)} clips, speakers {' '.join(left_out)}); this split is of the rest"
    )
    return attrs.evolve(
        inner,
        **{name: [kept[j] for j in getattr(inner, name)] for name in PARTS},
        clips=clips,
        notes=(note, *inner.notes),
    )


def _with_note(split: Split, note: str) -> Split:
    return attrs.evolve(split, notes=(note, *split.notes)) if note else split


def _make_split(clips: Sequence[Clip], config: SplitConfig, seed: int) -> Split:
    clips = tuple(clips)
    if not clips:
        raise SplitError("no clips to split")
    rng = np.random.default_rng([seed, config.fold])
    notes: list[str] = []
    if config.method == "random":
        parts = _stratified(
            range(len(clips)), clips, (config.val_fraction, config.test_fraction), rng
        )
        train, val, test = parts
    elif config.method == "predefined":
        train, val, test = _predefined(clips, config, rng, notes)
    else:
        if config.method == "loso":
            groups = [[s] for s in loso_folds(clips)]
        else:
            groups = speaker_folds(clips, config.folds, seed)
        if config.fold >= len(groups):
            raise SplitError(
                f"data.split.fold={config.fold} but {config.method!r} has {len(groups)} folds "
                f"(0 to {len(groups) - 1})"
            )
        test_speakers = set(groups[config.fold])
        test = [i for i, c in enumerate(clips) if c.speaker in test_speakers]
        rest = [i for i, c in enumerate(clips) if c.speaker not in test_speakers]
        train, val = _speaker_val(rest, clips, config.val_fraction, rng, notes)
    if not train:
        raise SplitError(f"split {config.method!r} fold {config.fold} leaves no training clips")
    return Split(
        train=sorted(train),
        val=sorted(val),
        test=sorted(test),
        method=config.method,
        fold=config.fold,
        clips=clips,
        notes=tuple(notes),
    )


# -- internals ---------------------------------------------------------------------------


def _hash_or_none(content_hash: ContentHash, path: Path) -> str | None:
    try:
        return content_hash(path)
    except OSError:
        return None


def _listing_change(then: list[str], now: list[str]) -> str:
    """What changed between two clip listings, in words (first examples only)."""
    before, after = set(then), set(now)
    added = [n for n in now if n not in before]
    gone = [n for n in then if n not in after]
    changes = [f"{len(added)} new clips (e.g. {added[0]})"] if added else []
    changes += [f"{len(gone)} clips gone (e.g. {gone[0]})"] if gone else []
    return "; ".join(changes) or "the clips are listed in another order"


def _stratified(
    indices: Sequence[int],
    clips: Sequence[Clip],
    fractions: tuple[float, ...],
    rng: np.random.Generator,
) -> list[list[int]]:
    """[rest, part for fractions[0], part for fractions[1], ...], each class split alike.

    A class with at least ``len(fractions) + 1`` clips puts at least one clip in every part
    whose fraction is above zero, so small classes still appear in validation and test.
    """
    by_label: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        by_label[clips[i].label].append(i)
    out: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in sorted(by_label):
        members = [by_label[label][j] for j in rng.permutation(len(by_label[label]))]
        n = len(members)
        start = 0
        for k, fraction in enumerate(fractions, start=1):
            take = round(n * fraction)
            if fraction > 0 and take == 0 and n > len(fractions):
                take = 1
            out[k] += members[start : start + take]
            start += take
        out[0] += members[start:]
    return out


def _speaker_val(
    rest: list[int],
    clips: Sequence[Clip],
    fraction: float,
    rng: np.random.Generator,
    notes: list[str],
) -> tuple[list[int], list[int]]:
    """(train, val) from the non-test clips, holding out whole speakers for validation."""
    if fraction == 0 or not rest:
        return rest, []
    speakers = sorted({clips[i].speaker for i in rest})
    if len(speakers) < 2:
        notes.append(
            "validation clips share the only training speaker (too few speakers to hold one out)"
        )
        train, val = _stratified(rest, clips, (fraction,), rng)
        return train, val
    counts = {s: sum(1 for i in rest if clips[i].speaker == s) for s in speakers}
    target = fraction * len(rest)
    chosen: list[str] = []
    total = 0
    for s in (speakers[j] for j in rng.permutation(len(speakers))):
        if len(chosen) == len(speakers) - 1:
            break
        if not chosen or abs(total + counts[s] - target) < abs(total - target):
            chosen.append(s)
            total += counts[s]
    held = set(chosen)
    notes.append(f"validation speakers: {', '.join(sorted(held))}")
    return (
        [i for i in rest if clips[i].speaker not in held],
        [i for i in rest if clips[i].speaker in held],
    )


def _predefined(
    clips: Sequence[Clip], config: SplitConfig, rng: np.random.Generator, notes: list[str]
) -> tuple[list[int], list[int], list[int]]:
    missing = [c.path for c in clips if c.split is None]
    if missing:
        raise SplitError(
            f"split method 'predefined' needs a split for every clip; {len(missing)} have none "
            f"(e.g. {missing[0]}); add a 'split' column (train/val/test) to the manifest"
        )
    parts = {name: [i for i, c in enumerate(clips) if c.split == name] for name in PARTS}
    if not parts["val"] and config.val_fraction > 0 and parts["train"]:
        parts["train"], parts["val"] = _stratified(
            parts["train"], clips, (config.val_fraction,), rng
        )
        notes.append("no clips marked 'val': validation is a stratified share of 'train'")
    return parts["train"], parts["val"], parts["test"]
