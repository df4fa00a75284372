"""Clip-list checks and manifest reading: every problem reported at once, with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsent.contracts import Clip
from avsent.data.manifest import (
    DatasetProblems,
    find_problems,
    read_manifest,
    validate_clips,
)
from avsent.errors import AvsentError


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A data folder with three (tiny, content-free) clip files."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (folder / name).write_bytes(b"RIFF")
    return folder


def test_a_good_list_passes(media: Path) -> None:
    clips = [Clip(media / "a.wav", "sad", "s1"), Clip(media / "b.wav", "happy", "s2")]
    validate_clips(clips, ("sad", "happy"), "mine")
    assert find_problems(clips, ("sad", "happy")) == []


def test_every_problem_is_listed(media: Path) -> None:
    clips = [
        Clip(media / "a.wav", "sad"),
        Clip(media / "missing.wav", "sad"),
        Clip(media / "b.wav", "bored"),
        Clip(media / "a.wav", "sad"),
        Clip(media / "c.wav", "sad", split="training"),
    ]
    with pytest.raises(DatasetProblems) as info:
        validate_clips(clips, ("sad", "happy"), "mine")
    err = info.value
    assert isinstance(err, AvsentError)
    assert len(err.problems) == 5
    text = str(err)
    assert text.startswith("dataset mine: 5 problems")
    assert f"{media / 'missing.wav'}: file not found" in text
    assert "unknown label 'bored'" in text
    assert "duplicate path" in text
    assert "split 'training'" in text
    assert "class 'happy' has no clips" in text


def test_duplicates_are_found_through_different_spellings(media: Path) -> None:
    clips = [Clip(media / "a.wav", "sad"), Clip(media / "sub" / ".." / "a.wav", "sad")]
    (media / "sub").mkdir()
    assert any("duplicate path" in p for p in find_problems(clips, ("sad",)))


def test_empty_list_is_a_problem() -> None:
    with pytest.raises(DatasetProblems, match="no clips found"):
        validate_clips([], ("sad",), "mine")


def test_csv_manifest_relative_paths_and_optional_columns(media: Path) -> None:
    manifest = media / "clips.csv"
    manifest.write_text(
        "path,label,speaker,split\na.wav,sad,s1,train\nb.wav,happy,,test\n\n"
        f"{media / 'c.wav'},happy,s2,\n"
    )
    clips, locations, problems = read_manifest(manifest)
    assert problems == []
    assert clips == [
        Clip(media / "a.wav", "sad", "s1", "train"),
        Clip(media / "b.wav", "happy", None, "test"),
        Clip(media / "c.wav", "happy", "s2", None),
    ]
    assert locations == [f"{manifest}:2", f"{manifest}:3", f"{manifest}:5"]


def test_jsonl_manifest(media: Path) -> None:
    manifest = media / "clips.jsonl"
    rows = [{"path": "a.wav", "label": "sad", "speaker": "s1"}, {"path": "b.wav", "label": "sad"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    clips, _, problems = read_manifest(manifest)
    assert problems == []
    assert [c.path for c in clips] == [media / "a.wav", media / "b.wav"]
    assert clips[1].speaker is None


def test_bad_rows_and_bad_clips_are_reported_together_with_lines(media: Path) -> None:
    manifest = media / "clips.csv"
    manifest.write_text(
        "path,label,speaker\n"
        "a.wav,sad,s1\n"  # 2: fine
        "b.wav,,s1\n"  # 3: no label
        "c.wav,sad\n"  # 4: a field short
        "nothere.wav,sad,s2\n"  # 5: missing file
        "a.wav,sad,s1\n"  # 6: duplicate of line 2
        "c.wav,angry,s3\n"  # 7: unknown label
    )
    clips, locations, problems = read_manifest(manifest)
    with pytest.raises(DatasetProblems) as info:
        validate_clips(
            clips, ("sad", "happy"), str(manifest), locations=locations, problems=problems
        )
    found = info.value.problems
    assert len(found) == 6
    assert found[0] == f"{manifest}:3: missing label"
    assert found[1] == f"{manifest}:4: expected 3 fields, got 2"
    assert any(p.startswith(f"{manifest}:5: ") and "file not found" in p for p in found)
    assert any(p.startswith(f"{manifest}:6: ") and f"{manifest}:2" in p for p in found)
    assert any(p.startswith(f"{manifest}:7: ") and "unknown label 'angry'" in p for p in found)
    assert "class 'happy' has no clips" in found


def test_bad_header_and_bad_json_lines(media: Path) -> None:
    csv_file = media / "bad.csv"
    csv_file.write_text("file,emotion\na.wav,sad\n")
    _, _, problems = read_manifest(csv_file)
    assert len(problems) == 1
    assert problems[0].startswith(f"{csv_file}:1: header must name columns")

    jsonl = media / "bad.jsonl"
    jsonl.write_text(
        '{"path": "a.wav", "label": "sad"}\n{oops\n[1, 2]\n{"path": "b.wav", "mood": 1}\n'
    )
    clips, _, problems = read_manifest(jsonl)
    assert len(clips) == 1
    assert [p.split(": ")[0] for p in problems] == [f"{jsonl}:2", f"{jsonl}:3", f"{jsonl}:4"]


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetProblems, match="manifest file not found"):
        read_manifest(tmp_path / "none.csv")


def test_a_quoted_path_may_hold_a_newline_and_later_rows_keep_their_line(media: Path) -> None:
    odd = media / "two\nlines.wav"
    odd.write_bytes((media / "a.wav").read_bytes())
    manifest = media / "m.csv"
    manifest.write_text('path,label\n"two\nlines.wav",happy\na.wav,happy\nmissing.wav,sad\n')
    clips, locations, problems = read_manifest(manifest)
    assert not problems
    assert [c.path.name for c in clips] == ["two\nlines.wav", "a.wav", "missing.wav"]
    assert locations == [f"{manifest}:2", f"{manifest}:4", f"{manifest}:5"]


def test_a_symlink_loop_is_a_listed_problem_not_a_crash(media: Path) -> None:
    (media / "loop1").symlink_to(media / "loop2")
    (media / "loop2").symlink_to(media / "loop1")
    clips = [Clip(media / "loop1", "happy"), Clip(media / "a.wav", "happy")]
    assert find_problems(clips, ("happy",)) == [f"{media / 'loop1'}: symlink loop"]


@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_header_names_are_read_in_any_case_and_spacing(media: Path, sep: str) -> None:
    manifest = media / "clips.csv"
    header = sep.join(["Path", " LABEL ", "Speaker", "SPLIT"])
    manifest.write_text(f"{header}\n" + sep.join(["a.wav", "sad", "s1", "train"]) + "\n")
    clips, _, problems = read_manifest(manifest)
    assert problems == []
    assert clips == [Clip(media / "a.wav", "sad", "s1", "train")]


def test_clip_problems_name_the_manifest_line_and_the_path(media: Path) -> None:
    clips = [
        Clip(media / "missing.wav", "sad"),
        Clip(media, "bored", split="training"),
        Clip(media / "a.wav", "sad"),
    ]
    where = ["m.csv:2", "m.csv:3", "m.csv:4"]
    assert find_problems(clips, ("sad", "happy"), locations=where) == [
        f"m.csv:2: {media / 'missing.wav'}: file not found",
        f"m.csv:3: {media}: not a file",
        f"m.csv:3: {media}: unknown label 'bored' (classes: sad, happy)",
        f"m.csv:3: {media}: split 'training' is not one of train, val, test",
        "class 'happy' has no clips",
    ]
    assert find_problems([], ("sad",)) == ["no clips found"]
    with pytest.raises(ValueError):  # one location per clip, or the prefixes would shift
        find_problems(clips, ("sad",), locations=where[:2])


def test_a_bad_csv_header_says_what_it_needs_and_what_it_got(media: Path) -> None:
    want = "header must name columns from path, label, speaker, split (path and label required)"
    for header, got in (
        ("file,emotion", "file, emotion"),
        ("path,label,mood", "path, label, mood"),
        ("path,speaker", "path, speaker"),
        ("", "nothing"),
    ):
        manifest = media / "m.csv"
        manifest.write_text(f"{header}\na.wav,sad\n")
        assert read_manifest(manifest) == ([], [], [f"{manifest}:1: {want}, got {got}"])


def test_the_first_line_alone_picks_comma_or_tab(media: Path) -> None:
    # a stray tab in a comma header keeps commas; a comma in a later tab row keeps tabs
    comma = media / "comma.csv"
    comma.write_text("path,label,speaker\t\na.wav,sad,s1\n")
    tab = media / "tab.tsv"
    tab.write_text("path\tlabel\na.wav\tsad\nb, c.wav\thappy\n")
    assert read_manifest(comma)[0] == [Clip(media / "a.wav", "sad", "s1")]
    assert read_manifest(tab)[0] == [
        Clip(media / "a.wav", "sad"),
        Clip(media / "b, c.wav", "happy"),
    ]


def test_problems_are_listed_in_line_order_past_line_nine(media: Path) -> None:
    manifest = media / "m.csv"
    manifest.write_text("path,label,speaker\n" + "a.wav,sad,s1\n" * 7 + "x.wav\n,,s1\n")
    _, _, problems = read_manifest(manifest)
    assert problems == [
        f"{manifest}:9: expected 3 fields, got 1",
        f"{manifest}:10: missing path and label",
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json", ".JSONL"])
def test_json_lines_manifests_by_suffix(media: Path, suffix: str) -> None:
    manifest = media / f"clips{suffix}"
    manifest.write_text('{"path": "a.wav", "label": "sad"}\n')
    assert read_manifest(manifest)[0] == [Clip(media / "a.wav", "sad")]


def test_jsonl_rows_after_a_blank_or_bad_line_are_still_read(media: Path) -> None:
    manifest = media / "clips.jsonl"
    manifest.write_text(
        '{"path": "a.wav", "label": "sad"}\n\n'
        '{"path": "b.wav", "label": "sad", "mood": 1, "take": 2}\n'
        '{"path": "c.wav", "label": "sad"}\n'
    )
    clips, _, problems = read_manifest(manifest)
    assert [c.path.name for c in clips] == ["a.wav", "c.wav"]
    assert problems == [f"{manifest}:3: unknown keys mood, take"]


def test_a_utf8_bom_from_a_spreadsheet_is_not_part_of_the_header(media: Path) -> None:
    manifest = media / "clips.csv"
    manifest.write_bytes("path,label\na.wav,sad\n".encode("utf-8-sig"))
    assert read_manifest(manifest) == ([Clip(media / "a.wav", "sad")], [f"{manifest}:2"], [])


def test_an_unreadable_or_missing_manifest_names_its_file(media: Path) -> None:
    manifest = media / "clips.csv"
    manifest.write_bytes(b"path,label\n\xff\xfe.wav,sad\n")
    with pytest.raises(DatasetProblems) as info:
        read_manifest(manifest)
    assert info.value.source == str(manifest)
    assert info.value.problems[0].startswith("cannot read manifest (")
    with pytest.raises(DatasetProblems) as info:
        read_manifest(media / "none.csv")
    assert (info.value.source, info.value.problems) == (
        str(media / "none.csv"),
        ["manifest file not found"],
    )
