"""Splits: stratified random, speakers kept apart, LOSO fold count, JSON round trip."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from avsent.contracts import Clip
from avsent.data.splits import (
    Split,
    SplitError,
    loso_folds,
    make_split,
    n_folds,
    resolve_method,
    speaker_folds,
)
from avsent.run_config import OuterSplit, SplitConfig

LABELS = ("sad", "angry", "happy")


def corpus(speakers: int = 6, per_label: int = 4, *, speaker: bool = True) -> list[Clip]:
    """``speakers`` × labels × ``per_label`` clips (paths need not exist for splitting)."""
    return [
        Clip(Path(f"/d/s{s}_{label}_{i}.wav"), label, f"s{s}" if speaker else None)
        for s in range(speakers)
        for label in LABELS
        for i in range(per_label)
    ]


def assert_partition(split: Split, n: int) -> None:
    parts = split.train + split.val + split.test
    assert sorted(parts) == list(range(n))


def test_random_split_is_stratified_and_seeded() -> None:
    clips = corpus(speakers=5, per_label=4)  # 20 clips per label
    config = SplitConfig(method="random", val_fraction=0.2, test_fraction=0.25)
    split = make_split(clips, config, seed=1)
    assert_partition(split, len(clips))
    for part, expected in (("train", 11), ("val", 4), ("test", 5)):
        assert Counter(c.label for c in split.part(part)) == dict.fromkeys(LABELS, expected)
    assert make_split(clips, config, seed=1) == split
    assert make_split(clips, config, seed=2).test != split.test


def test_auto_keeps_speakers_apart_whenever_the_data_allows() -> None:
    with_speakers = make_split(corpus(speakers=6), SplitConfig(folds=5), seed=0)
    assert with_speakers.method == "speaker-kfold"
    assert not with_speakers.speakers("test") & with_speakers.speakers("train")
    assert with_speakers.notes[0].startswith("split method auto → speaker-kfold")
    assert n_folds(corpus(speakers=6), SplitConfig(folds=5)) == 5
    too_few = make_split(corpus(speakers=4), SplitConfig(folds=5), seed=0)
    assert too_few.method == "random" and "only 4 speakers for 5 folds" in too_few.notes[0]
    unnamed = make_split(corpus(speakers=6, speaker=False), SplitConfig(folds=5), seed=0)
    assert unnamed.method == "random" and "not every clip has a speaker" in unnamed.notes[0]
    given = make_split(corpus(speakers=6), SplitConfig(method="random"), seed=0)
    assert given.method == "random" and not given.notes


def test_small_classes_still_reach_validation_and_test() -> None:
    clips = [Clip(Path(f"/d/{i}.wav"), label) for label in LABELS for i in range(3)]
    split = make_split(clips, SplitConfig(val_fraction=0.1, test_fraction=0.1), seed=0)
    for part in ("train", "val", "test"):
        assert {c.label for c in split.part(part)} == set(LABELS)


def test_speaker_kfold_keeps_speakers_apart_and_covers_each_once() -> None:
    clips = corpus(speakers=7)
    config = SplitConfig(method="speaker-kfold", folds=3, val_fraction=0.2)
    assert n_folds(clips, config) == 3
    tested = []
    for fold in range(3):
        split = make_split(clips, SplitConfig(method="speaker-kfold", folds=3, fold=fold), seed=4)
        assert_partition(split, len(clips))
        train, val, test = (split.speakers(p) for p in ("train", "val", "test"))
        assert train and val and test
        assert not (train & test) and not (train & val) and not (val & test)
        assert split.method == "speaker-kfold" and split.fold == fold
        tested += sorted(test)
    assert sorted(tested) == [f"s{i}" for i in range(7)]  # every speaker tested exactly once


def test_speaker_groups_are_balanced_by_clip_count() -> None:
    clips = corpus(speakers=2, per_label=6) + corpus(speakers=6, per_label=2)[24:]
    groups = speaker_folds(clips, 2, seed=0)
    sizes = [sum(1 for c in clips if c.speaker in g) for g in groups]
    assert abs(sizes[0] - sizes[1]) <= 6


def test_loso_has_one_fold_per_speaker() -> None:
    clips = corpus(speakers=4)
    config = SplitConfig(method="loso")
    assert loso_folds(clips) == ["s0", "s1", "s2", "s3"]
    assert n_folds(clips, config) == 4
    for fold in range(4):
        split = make_split(clips, SplitConfig(method="loso", fold=fold), seed=0)
        assert split.speakers("test") == {f"s{fold}"}
        assert f"s{fold}" not in split.speakers("train") | split.speakers("val")
    with pytest.raises(SplitError, match=r"has 4 folds \(0 to 3\)"):
        make_split(clips, SplitConfig(method="loso", fold=4), seed=0)


def test_one_training_speaker_left_falls_back_to_a_noted_stratified_val() -> None:
    split = make_split(corpus(speakers=2), SplitConfig(method="loso", fold=0), seed=0)
    assert split.speakers("val") == split.speakers("train") == {"s1"}
    assert any("only training speaker" in note for note in split.notes)


def test_speaker_methods_need_speakers_and_enough_of_them() -> None:
    with pytest.raises(SplitError, match="have no speaker"):
        make_split(corpus(speaker=False), SplitConfig(method="loso"), seed=0)
    with pytest.raises(SplitError, match="needs at least 5 speakers, the data has 3"):
        make_split(corpus(speakers=3), SplitConfig(method="speaker-kfold", folds=5), seed=0)


def test_predefined_uses_the_clips_own_split() -> None:
    parts = ["test", "val", *["test", "train", "train"] * 3, "train"]
    clips = [Clip(Path(f"/d/{i}.wav"), LABELS[i % 3], split=part) for i, part in enumerate(parts)]
    split = make_split(clips, SplitConfig(method="predefined"), seed=0)
    assert [clips[i].split for i in split.val] == ["val"]
    assert all(clips[i].split == "test" for i in split.test)
    with pytest.raises(SplitError, match="needs a split for every clip"):
        make_split(corpus(), SplitConfig(method="predefined"), seed=0)


def test_predefined_without_val_carves_one_from_train() -> None:
    clips = [Clip(Path(f"/d/{i}.wav"), LABELS[i % 3], split="train") for i in range(30)]
    split = make_split(clips, SplitConfig(method="predefined", val_fraction=0.2), seed=0)
    assert len(split.val) == 6 and len(split.train) == 24
    assert split.notes


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    clips = corpus(speakers=4)
    split = make_split(clips, SplitConfig(method="speaker-kfold", folds=2, fold=1), seed=3)
    path = tmp_path / "run" / "split.json"
    split.save(path)
    loaded = Split.load(path)
    assert loaded == split
    assert loaded.matches(clips)
    assert not loaded.matches(clips[::-1])
    record = loaded.to_dict()["clips"][split.test[0]]
    assert record["part"] == "test" and record["speaker"] == clips[split.test[0]].speaker


def moved(clips: list[Clip], to: str) -> list[Clip]:
    """The same clips under another folder (``/d/x.wav`` → ``<to>/x.wav``)."""
    return [attrs.evolve(c, path=Path(to) / c.path.relative_to("/d")) for c in clips]


def test_split_file_names_clips_relative_to_their_folder(tmp_path: Path) -> None:
    clips = corpus(speakers=2, per_label=1)
    hashes = tuple(f"h{i}" for i in range(len(clips)))
    split = attrs.evolve(make_split(clips, SplitConfig(method="random"), seed=0), hashes=hashes)
    split.save(tmp_path / "split.json")
    saved = json.loads((tmp_path / "split.json").read_text())
    assert saved["root"] == "/d"
    assert [r["path"] for r in saved["clips"]] == [c.path.name for c in clips]
    assert [r["sha256"] for r in saved["clips"]] == list(hashes)
    assert Split.load(tmp_path / "split.json") == split


def test_a_moved_dataset_still_matches_and_changed_content_does_not() -> None:
    clips = corpus(speakers=2, per_label=2)
    split = attrs.evolve(
        make_split(clips, SplitConfig(method="random"), seed=0),
        hashes=tuple(c.path.name for c in clips),
    )
    elsewhere = moved(clips, "/home/other/data")

    def content(path: Path) -> str:
        return path.name

    assert split.matches(elsewhere, content)
    changed = elsewhere[3].path

    def edited(path: Path) -> str:
        return "new bytes" if path == changed else path.name

    assert f"{changed.name} has other content" in split.difference(elsewhere, edited)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda cs: cs[:-1], "1 clips gone (e.g. s1_happy_1.wav)"),
        (lambda cs: [*cs, Clip(Path("/e/extra.wav"), "sad")], "1 new clips (e.g. extra.wav)"),
        (lambda cs: cs[::-1], "the clips are listed in another order"),
        (lambda cs: [attrs.evolve(cs[0], label="happy"), *cs[1:]], "labelled 'happy', was 'sad'"),
    ],
)
def test_a_changed_listing_is_named(change: Callable, expected: str) -> None:
    clips = moved(corpus(speakers=2, per_label=2), "/e")
    split = make_split(clips, SplitConfig(method="random"), seed=0)
    assert expected in split.difference(change(clips))


def test_an_old_split_file_with_absolute_paths_still_reads_and_travels(tmp_path: Path) -> None:
    clips = corpus(speakers=2, per_label=1)
    old = {
        "method": "random",
        "fold": 0,
        "clips": [{"path": str(c.path), "label": c.label, "speaker": c.speaker, "part": "train"}
                  for c in clips],
    }  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps(old))
    loaded = Split.load(tmp_path / "split.json")
    assert loaded.clips == tuple(clips) and loaded.hashes == ()
    assert loaded.matches(moved(clips, "/mnt/copy"), lambda path: "unchecked")


def test_unreadable_split_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text("{not json")
    with pytest.raises(SplitError, match="not a readable split file"):
        Split.load(path)


def test_copies_join_the_part_of_the_clip_they_copy() -> None:
    clips = corpus(speakers=5, per_label=4)
    groups = [[0, 7, 33], [2, 50]]
    split = make_split(clips, SplitConfig(method="random"), seed=0, groups=groups)
    assert_partition(split, len(clips))
    where = {i: name for name in ("train", "val", "test") for i in getattr(split, name)}
    for group in groups:
        assert len({where[i] for i in group}) == 1
    assert split.clips == tuple(clips) and "3 byte-identical copies" in split.notes[-1]


def test_no_copies_split_exactly_as_before() -> None:
    clips = corpus(speakers=5, per_label=4)
    config = SplitConfig(method="speaker-kfold", folds=3, fold=1)
    assert make_split(clips, config, seed=2, groups=[]) == make_split(clips, config, seed=2)


def test_duplicates_are_found_by_content_and_named() -> None:
    from avsent.data.splits import content_hashes, describe_duplicates, duplicate_groups

    clips = corpus(speakers=1, per_label=2)  # 6 clips
    content = {0: "x", 1: "y", 2: "x", 3: "z", 4: "x", 5: "y"}
    by_path = {c.path: content[i] for i, c in enumerate(clips)}
    groups = duplicate_groups(content_hashes(clips, by_path.__getitem__))
    assert groups == [[0, 2, 4], [1, 5]]
    message = describe_duplicates(clips, groups)
    assert message.startswith("3 clips are byte-identical copies of another: ")
    assert f"{clips[2].path} = {clips[0].path}" in message


# -- nested (an outer fold kept out of sight) -------------------------------------------


def nested(fold: int, *, outer_fold: int = 1, folds: int = 3, method: str = "speaker-kfold"):
    return SplitConfig(
        method=method, folds=folds, fold=fold, outer=OuterSplit(fold=outer_fold, folds=5)
    )


def test_a_nested_split_never_uses_the_outer_test_speakers() -> None:
    clips = corpus(speakers=10)
    outer = make_split(clips, SplitConfig(method="speaker-kfold", folds=5, fold=1), seed=3)
    hidden = outer.speakers("test")
    assert hidden
    seen: set[str] = set()
    for fold in range(n_folds(clips, nested(0), seed=3)):
        split = make_split(clips, nested(fold), seed=3)
        used = split.speakers("train") | split.speakers("val") | split.speakers("test")
        assert not used & hidden
        assert used == outer.speakers("train") | outer.speakers("val")
        assert not split.speakers("test") & split.speakers("train")
        assert split.notes[0].startswith("nested: outer fold 1 of 5 left out")
        seen |= split.speakers("test")
    # the inner folds test every speaker the outer fold trains or validates on, once
    assert seen == outer.speakers("train") | outer.speakers("val")


def test_nested_fold_count_is_of_the_speakers_left() -> None:
    clips = corpus(speakers=10)
    # leave-one-speaker-out inside leave-one-speaker-out: 9 speakers left, 9 inner folds
    assert n_folds(clips, nested(0, outer_fold=0, method="loso")) == 9
    assert n_folds(clips, nested(0, outer_fold=0, folds=3)) == 3
    inner = make_split(clips, nested(8, outer_fold=0, method="loso"), seed=0)
    assert len(inner.speakers("test")) == 1


def test_a_nested_split_keeps_copies_with_their_original() -> None:
    clips = corpus(speakers=10)
    groups = [[0, len(clips) - 1]]  # the first clip and the last are the same bytes
    split = make_split(clips, nested(0), seed=0, groups=groups)
    part = {i: name for name in ("train", "val", "test") for i in getattr(split, name)}
    assert part.get(0) == part.get(len(clips) - 1)


def test_a_nested_split_round_trips_with_the_hidden_clips_in_no_part(tmp_path: Path) -> None:
    clips = corpus(speakers=10)
    split = make_split(clips, nested(2), seed=0)
    split.save(tmp_path / "split.json")
    again = Split.load(tmp_path / "split.json")
    assert (again.train, again.val, again.test) == (split.train, split.val, split.test)
    unused = len(clips) - len(split.train + split.val + split.test)
    records = json.loads((tmp_path / "split.json").read_text())["clips"]
    assert unused > 0 and sum(r["part"] is None for r in records) == unused


def test_auto_in_a_nested_split_is_decided_by_the_outer_fold_count() -> None:
    config = SplitConfig(folds=2, outer=OuterSplit(fold=0, folds=5))
    assert resolve_method(corpus(speakers=6), config)[0].method == "speaker-kfold"
    # 4 speakers are enough for 2 inner folds but not for 5 outer ones: random at both levels
    assert resolve_method(corpus(speakers=4), config)[0].method == "random"
    split = make_split(corpus(speakers=4), config, seed=0)
    assert split.method == "random" and split.test
