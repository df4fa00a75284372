"""Config plumbing: typed parsing, dotted errors, overrides, TOML round trip, atomic writes."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from attrs import validators as v

from avsent.config import (
    NONE,
    Choice,
    SlotFieldsDropped,
    apply_overrides,
    atomic_write_text,
    choice_field,
    dump_toml,
    from_dict,
    load_toml,
    merge,
    parse_override,
    to_dict,
)
from avsent.errors import ConfigError, RegistryError
from avsent.registry import get_registry
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


# -- every type the parser knows, each accepted form and each error, exactly ------------


@attrs.define
class Typed:
    anything: Any = None
    maybe_count: int | None = None
    rate_or_name: float | str = 0.0
    mode: Literal["fast", "slow"] = "fast"
    inner: Inner = attrs.Factory(Inner)
    sizes: tuple[int, ...] = ()
    pair: tuple[int, str] = (0, "")
    names: list[str] = attrs.Factory(list)
    loose: list = attrs.Factory(list)
    table: dict[str, Any] = attrs.Factory(dict)
    flag: bool = False
    count: int = 0
    rate: float = 0.0
    label: str = ""
    where: Path = Path(".")
    blob: bytes = b""


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("anything", {"a": [1]}, {"a": [1]}),
        ("maybe_count", None, None),
        ("maybe_count", 3, 3),
        ("rate_or_name", 2, 2.0),  # the first member that accepts it: a float, not an int
        ("rate_or_name", "auto", "auto"),
        ("mode", "slow", "slow"),
        ("inner", Inner(width=2), Inner(width=2)),  # an instance is taken as it is
        ("sizes", [1, 2, 3], (1, 2, 3)),
        ("pair", [1, "x"], (1, "x")),
        ("names", ["a", "b"], ["a", "b"]),
        ("loose", [1, "a"], [1, "a"]),
        ("table", {"a": 1}, {"a": 1}),
        ("flag", True, True),
        ("count", 4, 4),
        ("rate", 1, 1.0),
        ("label", "x", "x"),
        ("where", "a/b", Path("a/b")),
        ("blob", b"raw", b"raw"),  # a type the parser has no rule for passes unchecked
    ],
)
def test_each_type_accepts_its_forms(field, value, expected):
    out = getattr(from_dict(Typed, {field: value}), field)
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"maybe_count": "3"}, "maybe_count", "expected an integer, got '3'"),
        (
            {"rate_or_name": [1]},
            "rate_or_name",
            "expected a number, got [1] or expected a string, got [1]",
        ),
        ({"mode": "medium"}, "mode", "expected one of 'fast', 'slow', got 'medium'"),
        ({"inner": 5}, "inner", "expected a table of fields, got 5"),
        ({"sizes": 5}, "sizes", "expected a list, got 5"),
        ({"pair": [1]}, "pair", "expected 2 items, got 1"),
        ({"pair": [1, 2]}, "pair[1]", "expected a string, got 2"),
        ({"pair": ["x", "y"]}, "pair[0]", "expected an integer, got 'x'"),
        ({"names": ["a", 1]}, "names[1]", "expected a string, got 1"),
        ({"table": "x"}, "table", "expected a table, got 'x'"),
        ({"flag": 1}, "flag", "expected true or false, got 1"),
        ({"count": True}, "count", "expected an integer, got True"),
        ({"rate": True}, "rate", "expected a number, got True"),
        ({"rate": "fast"}, "rate", "expected a number, got 'fast'"),
        ({"label": 3}, "label", "expected a string, got 3"),
        ({"where": 3}, "where", "expected a path, got 3"),
        ({"inner": {"width": 0}}, "inner", "'width' must be >= 1: 0"),
    ],
)
def test_each_type_rejects_with_the_field_and_the_problem(data, field, problem):
    with pytest.raises(ConfigError) as info:
        from_dict(Typed, data)
    assert (info.value.field, info.value.problem) == (field, problem)


def test_a_config_that_is_not_a_table_is_named_by_its_class():
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, 5)
    assert (info.value.field, info.value.problem) == ("Outer", "expected a table of fields, got 5")


def test_an_unknown_field_lists_the_fields_there_are():
    @attrs.define
    class Empty:
        pass

    with pytest.raises(ConfigError) as info:
        from_dict(Outer, {"inner": {"depth": 1}})
    assert info.value.field == "inner.depth"
    assert info.value.problem == "unknown field; Inner has: width, sizes, mode"
    with pytest.raises(ConfigError, match="^x: unknown field; Empty has: no fields$"):
        from_dict(Empty, {"x": 1})


def test_a_moved_field_is_reported_with_where_it_went_before_other_unknown_fields():
    @attrs.define
    class Renamed:
        moved_fields: typing.ClassVar[dict[str, str]] = {"zoom": "now faces.crop_size"}
        width: int = 1

    with pytest.raises(ConfigError) as info:
        from_dict(Renamed, {"aaa": 1, "zoom": 2})
    assert (info.value.field, info.value.problem) == ("zoom", "now faces.crop_size")


def test_a_validator_error_keeps_its_own_words_and_names_the_attribute():
    def even(_instance, attribute, value):
        if value % 2:
            raise ValueError("must be even", attribute)

    @attrs.define
    class Even:
        size: int = attrs.field(default=2, validator=even)

    with pytest.raises(ConfigError) as info:
        from_dict(Even, {"size": 3})
    assert (info.value.field, info.value.problem) == ("Even", "size: must be even")


# -- component slots ---------------------------------------------------------------------


@attrs.define
class Slotted:
    audio: Choice = choice_field("audio_encoder", "drsn")
    fusion: Choice = choice_field("fusion", "cma")


def test_a_choice_field_defaults_to_its_component_and_knows_its_kind():
    assert Slotted().audio == Choice("drsn")
    assert attrs.fields(Slotted).audio.metadata == {"kind": "audio_encoder"}


def test_a_slot_reads_a_name_or_a_table():
    drsn = get_registry().get("audio_encoder", "drsn").config
    assert from_dict(Slotted, {"audio": "drsn"}).audio == Choice("drsn", drsn())
    out = from_dict(Slotted, {"audio": {"name": "drsn", "widths": [8]}}).audio
    assert out == Choice("drsn", drsn(widths=(8,)))
    assert from_dict(Slotted, {"audio": "none"}).audio == Choice(NONE)
    assert from_dict(Slotted, {"fusion": "concat"}).fusion == Choice("concat")


def test_an_unknown_component_is_reported_at_the_slot_name_with_the_registry_message():
    with pytest.raises(RegistryError) as expected:
        get_registry().get("audio_encoder", "drsm")
    with pytest.raises(ConfigError) as info:
        from_dict(Slotted, {"audio": "drsm"})
    assert (info.value.field, info.value.problem) == ("audio.name", str(expected.value))


@pytest.mark.parametrize(
    ("slot", "field", "problem"),
    [
        ({"audio": 5}, "audio", "expected a component name or a table with 'name', got 5"),
        (
            {"audio": {"widths": [8]}},
            "audio",
            "expected a component name or a table with 'name', got {'widths': [8]}",
        ),
        (
            {"audio": {"name": "none", "widths": [8]}},
            "audio",
            "slot is 'none' but has fields ['widths']",
        ),
        (
            {"fusion": {"name": "concat", "d": 1}},
            "fusion",
            "'concat' takes no config fields, got ['d']",
        ),
        ({"audio": {"name": "drsn", "widthz": [8]}}, "audio.widthz", None),
    ],
)
def test_a_bad_slot_names_the_slot(slot, field, problem):
    with pytest.raises(ConfigError) as info:
        from_dict(Slotted, slot)
    assert info.value.field == field
    if problem is not None:
        assert info.value.problem == problem


def test_changing_a_slot_keeps_every_shared_setting_and_reports_nothing_dropped():
    base = {"audio": {"name": "drsn", "widths": [16, 32], "shrinkage": "channel-wise"}}
    dropped: list[str] = []
    out = merge(base, {"audio": {"name": "resnet-plain", "dropout": 0.3}}, RunConfig, dropped)
    assert out["audio"] == {"name": "resnet-plain", "widths": [16, 32], "dropout": 0.3}
    assert dropped == []


def test_settings_left_at_the_old_components_defaults_are_not_carried():
    defaults = to_dict(get_registry().get("video_encoder", "i3dd").config())
    base = {"video": {"name": "i3dd", **defaults}}  # every field written out, none chosen
    dropped: list[str] = []
    out = merge(base, {"video": "densenet3d"}, RunConfig, dropped)
    assert out["video"] == {"name": "densenet3d"}
    assert dropped == []


def test_every_dropped_setting_is_named_in_one_note():
    base = {"audio": {"name": "drsn", "widths": [16, 32], "stem_channels": 16}}
    dropped: list[str] = []
    out = merge(base, {"audio": {"name": "lstm"}}, RunConfig, dropped)
    assert out["audio"] == {"name": "lstm"}
    assert dropped == [
        "audio: 'lstm' has no field for stem_channels = 16, widths = [16, 32] "
        "(set for 'drsn'); dropped"
    ]


def test_a_component_without_config_drops_every_chosen_setting():
    dropped: list[str] = []
    out = merge({"fusion": {"name": "cma", "heads": 4}}, {"fusion": "concat"}, RunConfig, dropped)
    assert out["fusion"] == {"name": "concat"}
    assert dropped == ["fusion: 'concat' has no field for heads = 4 (set for 'cma'); dropped"]


def test_a_slot_inside_a_section_reports_its_dotted_path():
    base = {"faces": {"crop_size": 48, "landmarks": {"name": "dlib", "fit_size": 256}}}
    dropped: list[str] = []
    out = merge(base, {"faces": {"landmarks": {"name": "face-alignment"}}}, RunConfig, dropped)
    assert out["faces"] == {"crop_size": 48, "landmarks": {"name": "face-alignment"}}
    assert dropped == [
        "faces.landmarks: 'face-alignment' has no field for fit_size = 256 (set for 'dlib'); "
        "dropped"
    ]


def test_a_slot_keeping_its_name_is_merged_field_by_field():
    default_widths = to_dict(get_registry().get("audio_encoder", "drsn").config())["widths"]
    base = {"audio": {"name": "drsn", "widths": default_widths, "dropout": 0.2}}
    dropped: list[str] = []
    out = merge(base, {"audio": {"dropout": 0.3}}, RunConfig, dropped)
    assert out["audio"] == {"name": "drsn", "widths": default_widths, "dropout": 0.3}
    out = merge(base, {"audio": "drsn"}, RunConfig, dropped)
    assert out["audio"] == base["audio"]  # even the fields left at their defaults stay
    assert dropped == []


def test_emptying_a_slot_keeps_only_what_the_new_table_says():
    base = {"video": {"name": "i3dd", "growth_rate": 16}}
    dropped: list[str] = []
    assert merge(base, {"video": "none"}, RunConfig, dropped)["video"] == {"name": NONE}
    out = merge(base, {"video": {"name": "none", "growth_rate": 8}}, RunConfig, dropped)
    assert out["video"] == {"name": NONE, "growth_rate": 8}  # from_dict will reject it
    assert dropped == []


def test_a_slot_value_that_is_not_a_table_is_left_for_from_dict_to_report():
    dropped: list[str] = []
    assert merge({"audio": {"name": "drsn"}}, {"audio": 5}, RunConfig, dropped) == {"audio": 5}
    assert dropped == []


def test_merge_never_shares_nested_values_with_its_inputs():
    base = {"audio": {"name": "drsn", "widths": [16]}, "train": {"lr": 0.1}}
    top = {"audio": {"name": "resnet-plain", "widths": [8]}, "extra": {"a": [1]}}
    out = merge(base, top, RunConfig)
    out["audio"]["widths"].append(0)
    out["extra"]["a"].append(0)
    out["train"]["lr"] = 9
    assert top["audio"]["widths"] == [8] and top["extra"]["a"] == [1]
    assert base["train"]["lr"] == 0.1
    same_top = {"audio": {"name": "drsn", "widths": [4]}}
    same = merge(base, same_top, RunConfig)
    same["audio"]["widths"].append(0)
    assert base["audio"]["widths"] == [16] and same_top["audio"]["widths"] == [4]
    odd_top = {"audio": [[1]]}  # not a table: kept for from_dict to report, but not shared
    merge(base, odd_top, RunConfig)["audio"][0].append(0)
    assert odd_top == {"audio": [[1]]}


def test_an_old_slot_name_that_is_not_a_string_is_not_looked_up():
    """No component to ask for defaults: every setting counts as chosen and is kept."""
    out = merge({"audio": {"name": 5, "widths": [8]}}, {"audio": {"name": "drsn"}}, RunConfig)
    assert out["audio"] == {"name": "drsn", "widths": [8]}


def test_a_dropped_setting_warning_points_outside_the_config_module():
    import avsent.config

    small = run_config_dict("mavsa-di-small")
    with pytest.warns(SlotFieldsDropped) as caught:
        apply_overrides(small, {"audio.name": "lstm"}, RunConfig)
    assert Path(caught[0].filename) != Path(avsent.config.__file__)


def test_a_bad_slot_inside_a_section_names_its_dotted_path():
    @attrs.define
    class Section:
        slots: Slotted = attrs.Factory(Slotted)

    with pytest.raises(ConfigError) as info:
        from_dict(Section, {"slots": {"audio": 5}})
    assert info.value.field == "slots.audio"


def test_merge_starts_a_missing_section_and_copies_unknown_tables_as_they_are():
    out = merge({}, {"train": {"lr": 1.0}, "extra": {"a": 1}}, RunConfig)
    assert out == {"train": {"lr": 1.0}, "extra": {"a": 1}}


def test_merge_resolves_a_schema_whose_annotations_are_still_strings():
    @attrs.define
    class Fresh:  # never resolved before: under `from __future__ import annotations`
        inner: Inner = attrs.Factory(Inner)

    out = merge({"inner": {"width": 3, "mode": "b"}}, {"inner": {"width": 4}}, Fresh)
    assert out == {"inner": {"width": 4, "mode": "b"}}


def test_parse_override_splits_at_the_first_equals_sign():
    assert parse_override('train.note = "a=b"') == ("train.note", "a=b")
    with pytest.raises(ConfigError) as info:
        parse_override("video.growth_rate")
    assert info.value.field == "video.growth_rate"
    assert info.value.problem == "an override must look like field.path=value"


def test_to_dict_writes_keys_as_strings_and_paths_as_text():
    assert to_dict({1: Path("a/b")}) == {"1": "a/b"}
    assert to_dict(Path("c")) == "c"


# -- files ----------------------------------------------------------------------------------


def test_atomic_write_makes_the_folders_and_stages_beside_the_target(tmp_path: Path, monkeypatch):
    target = tmp_path / "a" / "b" / "out.txt"
    staged: list[Path] = []
    replace = os.replace

    def spy(src, dst):
        staged.append(Path(src))
        replace(src, dst)

    monkeypatch.setattr("avsent.config.os.replace", spy)
    atomic_write_text(target, "é")
    assert target.read_bytes() == "é".encode()
    assert staged[0].parent == target.parent
    assert staged[0].name.startswith(".out.txt.") and staged[0].name.endswith(".tmp")


def test_atomic_write_raises_the_real_error_when_the_staged_file_is_already_gone(
    tmp_path: Path, monkeypatch
):
    def vanish_then_fail(src, _dst):
        Path(src).unlink()
        raise OSError("disk full")

    monkeypatch.setattr("avsent.config.os.replace", vanish_then_fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(tmp_path / "out.txt", "x")


def test_load_toml_errors_name_the_file_and_no_field(tmp_path: Path):
    cases = {
        tmp_path / "missing.toml": "config file not found",
        tmp_path / "bad.toml": "not valid TOML (",
        tmp_path / "binary.toml": "not a text file (not UTF-8), so not TOML",
    }
    (tmp_path / "bad.toml").write_text("x = = 1")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    for path, problem in cases.items():
        with pytest.raises(ConfigError) as info:
            load_toml(path)
        assert info.value.field == ""
        assert str(info.value).startswith(f"{path}: {problem}")
