"""Config plumbing: typed parsing, dotted errors, overrides, TOML round trip, atomic writes."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from attrs import validators as v

from avsent.config import (
    Choice,
    SlotFieldsDropped,
    apply_overrides,
    atomic_write_text,
    dump_toml,
    from_dict,
    load_toml,
    merge,
    parse_override,
    to_dict,
)
from avsent.errors import ConfigError
from avsent.run_config import RunConfig, run_config_dict


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


def test_a_new_component_keeps_the_chosen_settings_it_also_has():
    small = run_config_dict("mavsa-di-small")  # audio: drsn, widths [16, 32, 64]
    out = apply_overrides(small, {"audio.name": "resnet-plain", "train.lr": 2.0}, RunConfig)
    assert out["audio"]["name"] == "resnet-plain"
    assert out["audio"]["widths"] == [16, 32, 64] and out["audio"]["stem_channels"] == 16
    assert "shrinkage" not in out["audio"]  # a DRSN-only field
    assert out["train"]["lr"] == 2.0
    assert small["audio"]["name"] == "drsn"  # the input is untouched


def test_settings_the_new_component_lacks_are_dropped_with_a_warning():
    small = run_config_dict("mavsa-di-small")
    with pytest.warns(SlotFieldsDropped, match=r"audio: 'lstm' has no field for .*widths"):
        out = apply_overrides(small, {"audio.name": "lstm"}, RunConfig)
    assert out["audio"] == {"name": "lstm"}


def test_defaults_of_the_old_component_are_not_carried_over():
    """i3dd's stem kernel default (3) is not a choice: densenet3d keeps its own (7)."""
    data = run_config_dict("mavsa-di")
    out = apply_overrides(data, {"video.name": "densenet3d"}, RunConfig)
    assert from_dict(RunConfig, out).video.config.stem_kernel == 7


def test_setting_the_same_name_again_keeps_the_slot():
    small = run_config_dict("mavsa-di-small")
    out = apply_overrides(small, {"audio.name": "drsn"}, RunConfig)
    assert out["audio"] == small["audio"]


def test_merge_lays_tables_over_tables_and_replaces_values():
    base = run_config_dict("mavsa-di")
    out = merge(base, {"train": {"lr": 0.5}, "faces": {"crop_size": 64}}, RunConfig)
    assert out["train"]["lr"] == 0.5 and out["train"]["epochs"] == base["train"]["epochs"]
    assert out["faces"]["crop_size"] == 64 and out["faces"]["margin"] == base["faces"]["margin"]


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
