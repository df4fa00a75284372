"""The core CLI commands, driven as a user would (in-process via click's runner)."""

from __future__ import annotations

import json
import tomllib

from click.testing import CliRunner

from avsent import __version__
from avsent.cli import cli, main
from avsent.hookspecs import hookimpl
from avsent.registry import get_registry


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_version():
    assert __version__ in invoke("--version")


def test_plugins_json_lists_shipped_plugins_with_components():
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json"))}
    assert rows["drsn"]["components"]["audio_encoder"] == ["drsn", "resnet-plain"]
    assert "register_audio_encoders" in rows["drsn"]["hooks"]
    assert all(row["error"] is None for row in rows.values())


def test_broken_plugin_shows_its_error_without_breaking_the_command():
    class Broken:
        @hookimpl
        def register_fusions(self, register):
            raise ImportError("needs a package that is not installed")

    registry = get_registry()
    registry.register_plugin(Broken(), name="broken-fusion")
    try:
        rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json"))}
        assert "not installed" in rows["broken-fusion"]["error"]
        assert rows["attention"]["error"] is None
        assert "broken-fusion" in invoke("plugins")
    finally:
        registry.unregister_plugin("broken-fusion")


def test_a_plugin_reusing_a_shipped_name_is_marked_failed_and_the_cli_works():
    class Clash:
        @hookimpl
        def register_audio_encoders(self, register):
            register.audio_encoder("drsn", object)

    registry = get_registry()
    registry.register_plugin(Clash(), name="clash")
    try:
        assert "plugins" in invoke("--help")
        rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json"))}
        assert "'drsn' is already registered by plugin 'drsn'" in rows["clash"]["error"]
        assert registry.get("audio_encoder", "drsn").plugin == "drsn"
    finally:
        registry.unregister_plugin("clash")


def test_components_filters_by_kind():
    rows = json.loads(invoke("components", "fusion", "--json"))
    assert {row["name"] for row in rows} >= {"cma", "concat", "passthrough"}
    assert {row["kind"] for row in rows} == {"fusion"}


def test_config_show_prints_a_loadable_full_config():
    text = invoke("config", "show", "mavsa-di", "--set", "video.growth_rate=16")
    data = tomllib.loads(text)
    assert data["recipe"] == "mavsa-di"
    assert data["video"]["name"] == "i3dd" and data["video"]["growth_rate"] == 16
    assert data["train"]["epochs"] >= 1


def test_config_error_is_one_clear_line(capsys):
    try:
        main(["config", "show", "mavsa-di", "--set", "video.growth_rate=fast"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err
    assert "video.growth_rate" in err and "expected an integer" in err
    assert "Traceback" not in err


def test_describe_prints_parameter_counts():
    rows = json.loads(invoke("describe", "mavsa-di-small", "--json"))
    assert rows[0]["recipe"] == "mavsa-di-small"
    assert rows[0]["parameters"] == sum(rows[0]["parts"].values())


def test_describe_lists_every_recipe_when_one_lacks_its_pretrained_weights(monkeypatch, capsys):
    import pytest

    import avsent.plugins.hf_speech as hf_speech
    from avsent.errors import WeightsUnavailableError

    def not_cached(model: str, *, download: bool, field: str):
        raise WeightsUnavailableError(f"{field}: {model!r} is not in the cache. Copy it here")

    monkeypatch.setattr(hf_speech, "checkpoint_folder", not_cached)
    rows = {row["recipe"]: row for row in json.loads(invoke("describe", "--json"))}
    assert rows["mavsa-di-ssl"]["parameters"] is None
    assert "audio_frontend.model" in rows["mavsa-di-ssl"]["unavailable"]
    assert rows["mavsa-di"]["parameters"] > 0  # the listing went on past it
    assert "weights not here" in invoke("describe")
    with pytest.raises(SystemExit):  # named explicitly, the recipe's own error stops it
        main(["describe", "mavsa-di-ssl"])
    assert "is not in the cache" in capsys.readouterr().err


def test_config_show_lists_unset_fields_as_comments_in_their_table():
    from avsent.config import to_dict
    from avsent.run_config import default_run_config

    text = invoke("config", "show", "mavsa-di")
    faces = text[text.index("\n[faces]\n") :]
    faces = faces[: faces.index("\n[", 1)]  # the [faces] table's own lines
    assert "\n# sample_fps = (unset)" in faces
    assert tomllib.loads(text) == to_dict(default_run_config("mavsa-di"))  # comments only


def test_describe_applies_set_overrides():
    plain, wider = (
        json.loads(invoke("describe", "mavsa-di-small", *extra, "--json"))[0]
        for extra in ((), ("--set", "video.growth_rate=16"))
    )
    assert wider["parts"]["audio_encoder"] == plain["parts"]["audio_encoder"]
    assert wider["parts"]["video_encoder"] > plain["parts"]["video_encoder"]


def test_readme_compose_builds_the_mavsa_di_model():
    import avsent
    from avsent.model import count_parameters

    [row] = json.loads(invoke("describe", "mavsa-di", "--json"))
    model = avsent.compose(
        audio="drsn", video="i3dd", audio_intra="ima", video_intra="ima", fusion="cma"
    )  # README.md, "In Python"
    assert count_parameters(model) == row["parameters"]
    parts = {k: count_parameters(m) for k, m in model.named_children()}
    assert {k: n for k, n in parts.items() if n} == row["parts"]  # describe: parts with weights
