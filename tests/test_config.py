"""Config plumbing: typed parsing, dotted errors, overrides, TOML round trip, atomic writes."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from attrs import validators as v

from avsent.config import (
    Choice,
    apply_overrides,
    atomic_write_text,
    deep_merge,
    dump_toml,
    from_dict,
    load_toml,
    parse_override,
    to_dict,
)
from avsent.errors import ConfigError


@attrs.define
class Inner:
    width: int = attrs.field(default=8, validator=v.ge(1))
    sizes: tuple[int, ...] = (1, 2)
    mode: str = "a"


@attrs.define
class Outer:
    inner: Inner = attrs.Factory(Inner)
    rate: float = 0.1
    flag: bool = False
    name: str | None = None


def test_from_dict_builds_nested_and_coerces_tuples():
    out = from_dict(Outer, {"inner": {"width": 3, "sizes": [4, 5]}, "rate": 1})
    assert out.inner == Inner(width=3, sizes=(4, 5))
    assert out.rate == 1.0 and isinstance(out.rate, float)


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"inner": {"widht": 3}}, "inner.widht", "unknown field"),
        ({"inner": {"width": "wide"}}, "inner.width", "expected an integer"),
        ({"inner": {"sizes": [1, "x"]}}, "inner.sizes[1]", "expected an integer"),
        ({"flag": "yes"}, "flag", "expected true or false"),
        ({"inner": {"width": 0}}, "inner", "width"),
    ],
)
def test_errors_name_the_dotted_field(data, field, expected):
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data)
    assert info.value.field == field
    assert expected in str(info.value)


def test_to_dict_round_trips_through_toml(tmp_path: Path):
    original = Outer(Inner(width=5, sizes=(7,)), rate=0.5, flag=True)
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(to_dict(original)))
    assert from_dict(Outer, load_toml(path)) == original


def test_none_fields_are_left_out_of_toml():
    assert "name" not in to_dict(Outer())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("video.growth_rate=16", ("video.growth_rate", 16)),
        ("train.lr=3e-4", ("train.lr", 3e-4)),
        ("audio.widths=[8, 16]", ("audio.widths", [8, 16])),
        ("audio.name=resnet-plain", ("audio.name", "resnet-plain")),
        ("train.amp=true", ("train.amp", True)),
    ],
)
def test_parse_override_reads_values_as_toml(text, expected):
    assert parse_override(text) == expected


def test_parse_override_needs_an_equals_sign():
    with pytest.raises(ConfigError, match="field.path=value"):
        parse_override("video.growth_rate")


def test_apply_overrides_changing_a_slot_name_drops_old_fields():
    data = {"audio": {"name": "drsn", "widths": [1]}, "train": {"lr": 1.0}}
    out = apply_overrides(data, {"audio.name": "lstm", "train.lr": 2.0})
    assert out == {"audio": {"name": "lstm"}, "train": {"lr": 2.0}}
    assert data["audio"]["widths"] == [1]  # the input is untouched


def test_deep_merge_replaces_a_slot_whose_name_changes():
    base = {"video": {"name": "i3dd", "growth_rate": 32}, "x": {"a": 1, "b": 2}}
    top = {"video": {"name": "none"}, "x": {"b": 3}}
    assert deep_merge(base, top) == {"video": {"name": "none"}, "x": {"a": 1, "b": 3}}


def test_choice_to_dict_flattens_name_and_params():
    assert to_dict(Choice("drsn", Inner(width=2))) == {
        "name": "drsn",
        "width": 2,
        "sizes": [1, 2],
        "mode": "a",
    }


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path: Path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("avsent.config.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "second")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_load_toml_reports_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("x = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)
