"""Checkpoints: safetensors only (no pickle), exact round trip, clear errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from tiny_training import CLASSES

from avsent.config import atomic_write_text, dump_toml, to_dict
from avsent.model import build_model, inputs_for
from avsent.training.checkpoint import (
    CONFIG_FILE,
    CheckpointError,
    checkpoint_path,
    config_header,
    load_model,
    read_checkpoint,
    save_checkpoint,
)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    x = torch.linspace(-1, 1, 12).reshape(3, 4)
    optimizer.zero_grad()
    model(x).square().sum().backward()
    optimizer.step()


def test_round_trip_continues_optimisation_identically(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.8, 0.95))
    step(model, optimizer)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 1, "history": [{"loss": 0.5}]}, optimizer)

    ckpt = read_checkpoint(path)
    assert ckpt.state["epoch"] == 1 and ckpt.state["history"] == [{"loss": 0.5}]
    clone = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5))
    clone.load_state_dict(ckpt.model_state)
    clone_opt = torch.optim.Adam(clone.parameters(), lr=0.1)
    clone_opt.load_state_dict(ckpt.optimizer_state)
    assert clone_opt.param_groups[0]["betas"] == (0.8, 0.95)
    step(model, optimizer)
    step(clone, clone_opt)
    for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_file_is_plain_safetensors_without_pickle(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 3}, torch.optim.Adam(model.parameters()))
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])  # the safetensors layout: JSON then raw bytes
    assert {"model.weight", "model.bias"} <= set(header)
    assert json.loads(header["__metadata__"]["avsent"])["epoch"] == 3
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_unreadable_or_missing_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable avsent checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="is it a run"):
        load_model(tmp_path)


def _with_header(path: Path, **changes) -> None:
    """Rewrite a checkpoint's avsent header in place (as a tampered file would be)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["avsent"])
    header.update(changes)
    path.write_bytes(save(load_file(str(path)), metadata={"avsent": json.dumps(header)}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epoch": "abc"}, "epoch must be a whole number >= 0, got 'abc'"),
        ({"epoch": -5}, "epoch must be a whole number >= 0, got -5"),
        ({"step": 1.5}, "step must be a whole number"),
        ({"history": {"loss": 1}}, "history must be a list"),
        ({"class_names": ["a", 3]}, "class_names must be a list of strings"),
        ({"optimizer": {"state": {"x": {}}, "param_groups": []}}, "damaged optimizer state"),
        ({"optimizer": {"param_groups": "?"}}, "damaged optimizer state"),
        ({"features": "mel"}, "features must be an object"),
    ],
)
def test_a_tampered_header_is_refused_naming_the_field(tmp_path: Path, changes, message) -> None:
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 3, "step": 9}, torch.optim.Adam(model.parameters()))
    _with_header(path, **changes)
    with pytest.raises(CheckpointError, match=message) as caught:
        read_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: damaged")


def test_weights_holding_nan_are_refused_not_scored(tmp_path: Path) -> None:
    """NaN weights would score every clip as the first class and print ``nan``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 1})
    read_checkpoint(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    tensors["model.bias"][1] = float("nan")
    path.write_bytes(save(tensors, metadata=meta))
    with pytest.raises(
        CheckpointError, match=r"NaN or infinite weights in 1 tensor\(s\) \(first: bias\)"
    ):
        read_checkpoint(path)


def test_load_model_rebuilds_the_trained_model(tmp_path: Path, tiny_config) -> None:
    config = tiny_config()
    model = build_model(config, inputs_for(config), CLASSES)
    with torch.no_grad():
        model.audio_mean.fill_(3.0)  # a buffer must travel too
    atomic_write_text(tmp_path / CONFIG_FILE, dump_toml(to_dict(config)))
    save_checkpoint(checkpoint_path(tmp_path, "last"), model, config_header(config, CLASSES))

    loaded, loaded_config = load_model(tmp_path)  # no best yet: falls back to last
    assert loaded.class_names == CLASSES
    assert to_dict(loaded_config) == to_dict(config)
    assert not loaded.training
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# -- the features a model was trained on ----------------------------------------------------


def _saved_run(tmp_path: Path, config) -> Path:
    model = build_model(config, inputs_for(config), CLASSES)
    save_checkpoint(checkpoint_path(tmp_path, "last"), model, config_header(config, CLASSES))
    return checkpoint_path(tmp_path, "last")


def test_the_header_stores_the_feature_spec(tmp_path: Path, tiny_config) -> None:
    config = tiny_config()
    path = _saved_run(tmp_path, config)
    features = read_checkpoint(path).state["features"]
    assert features == {
        "audio": {
            "bands": ["mel 0:128 frequency dB", "chroma 128:140"],
            "frames_per_second": 22050 / 512,
        },
        "video": None,  # the tiny recipe is audio-only
    }


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ({"frames_per_second": 100.0}, "audio.frames_per_second 100.0 stored, 43.06640625 now"),
        (
            {"bands": ["mel 0:128 frequency", "chroma 128:140"]},
            "audio.bands mel 0:128 frequency, chroma 128:140 stored, "
            "mel 0:128 frequency dB, chroma 128:140 now",
        ),
    ],
)
def test_a_model_trained_on_other_features_is_refused(
    tmp_path: Path, tiny_config, stored, says
) -> None:
    """A front-end whose layout changed under the same config (an upgraded plugin, say)
    would feed the model rows it never saw: evaluate and predict refuse, naming the run."""
    path = _saved_run(tmp_path, tiny_config())
    features = read_checkpoint(path).state["features"]
    _with_header(path, features={**features, "audio": {**features["audio"], **stored}})
    with pytest.raises(CheckpointError, match="trained on other features") as caught:
        load_model(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: run {tmp_path.name} ") and f"({says})" in message
    assert "\n" not in message


def _format_1(path: Path, frontend: dict) -> None:
    """Rewrite ``path`` as avsent wrote checkpoints before per-utterance mode moved to the
    normalisation stage and the feature spec was stored."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["avsent"])
    header.pop("features", None)
    header["format"] = 1
    header["config"]["audio_frontend"].update(frontend)
    path.write_bytes(save(load_file(str(path)), metadata={"avsent": json.dumps(header)}))


@pytest.mark.parametrize("per_utterance", [False, True])
def test_an_old_checkpoint_loads_with_its_per_utterance_setting(
    tmp_path: Path, tiny_config, per_utterance
) -> None:
    path = _saved_run(tmp_path, tiny_config())
    _format_1(path, {"per_utterance_norm": per_utterance, "norm_eps": 1e-5})
    _, config = load_model(tmp_path)  # no spec stored: unknown, not checked
    assert config.data.utterance_norm is per_utterance
    assert "per_utterance_norm" not in to_dict(config)["audio_frontend"]
    assert read_checkpoint(path).state["format"] == 2


def test_an_old_checkpoint_with_another_epsilon_is_refused(tmp_path: Path, tiny_config) -> None:
    path = _saved_run(tmp_path, tiny_config())
    _format_1(path, {"per_utterance_norm": True, "norm_eps": 1e-3})
    with pytest.raises(CheckpointError, match=f"^{path}: trained with audio_frontend.norm_eps"):
        load_model(tmp_path)
