"""Checkpoints: safetensors only (no pickle), exact round trip, clear errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from tiny_training import CLASSES

from avsent.config import atomic_write_text, dump_toml, from_dict, to_dict
from avsent.model import build_model, inputs_for
from avsent.run_config import RunConfig
from avsent.training.checkpoint import (
    CONFIG_FILE,
    CheckpointError,
    checkpoint_path,
    config_header,
    load_model,
    optimizer_state_problem,
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
    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["avsent"])
    header.update(changes)
    path.write_bytes(save(load_file(str(path)), metadata={"avsent": json.dumps(header)}))


def _saved_linear(tmp_path: Path) -> Path:
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 3, "step": 9}, torch.optim.Adam(model.parameters()))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epoch": "abc"}, "epoch must be a whole number >= 0, got 'abc'"),
        ({"epoch": -5}, "epoch must be a whole number >= 0, got -5"),
        ({"step": 1.5}, "step must be a whole number >= 0, got 1.5"),
        ({"bad_epochs": -1}, "bad_epochs must be a whole number >= 0, got -1"),
        ({"best_epoch": "2"}, "best_epoch must be a whole number or null, got '2'"),
        ({"best_score": "high"}, "best_score must be a number or null, got 'high'"),
        ({"best_score": True}, "best_score must be a number or null, got True"),
        ({"finished": "yes"}, "finished must be true or false, got 'yes'"),
        ({"history": {"loss": 1}}, "history must be a list of objects (one per epoch)"),
        ({"history": [0.5, 0.4]}, "history must be a list of objects (one per epoch)"),
        ({"features": "mel"}, "features must be an object (the facts of the features trained on)"),
        ({"class_names": ["a", 3]}, "class_names must be a list of strings"),
    ],
)
def test_a_tampered_header_is_refused_naming_the_field(tmp_path: Path, changes, message) -> None:
    path = _saved_linear(tmp_path)
    _with_header(path, **changes)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: damaged checkpoint header: {message}"


@pytest.mark.parametrize(
    ("optimizer", "problem"),
    [
        (
            {"state": {"x": {}}, "param_groups": []},
            "ValueError: invalid literal for int() with base 10: 'x'",
        ),
        ({"param_groups": "?"}, "KeyError: 'state'"),
    ],
)
def test_a_damaged_optimizer_state_is_refused(tmp_path: Path, optimizer, problem) -> None:
    path = _saved_linear(tmp_path)
    _with_header(path, optimizer=optimizer)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == (
        f"{path}: damaged optimizer state ({problem}); resume from another checkpoint or start "
        "a new run"
    )


def test_every_field_a_run_writes_passes_the_header_check(tmp_path: Path) -> None:
    path = _saved_linear(tmp_path)
    fields = {
        "bad_epochs": 0,
        "best_epoch": 2,
        "best_score": 0.5,
        "finished": True,
        "history": [{"loss": 0.5}],
        "features": {"audio": None},
        "class_names": ["a", "b"],
    }
    _with_header(path, **fields)
    assert read_checkpoint(path).state.items() >= fields.items()
    _with_header(path, best_epoch=None, best_score=None)  # no best yet
    assert read_checkpoint(path).state["best_epoch"] is None


@pytest.mark.parametrize(("header", "found"), [([1], "[1]"), ({"format": 3}, "3")])
def test_a_header_of_another_format_is_refused(tmp_path: Path, header, found) -> None:
    path = _saved_linear(tmp_path)
    path.write_bytes(save(load_file(str(path)), metadata={"avsent": json.dumps(header)}))
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: checkpoint format {found}, need 2"


def _edit_tensors(path: Path, edit) -> None:
    """Change a checkpoint's tensors in place (``edit`` works on the dict), header kept."""
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    edit(tensors)
    path.write_bytes(save(tensors, metadata=meta))


def test_weights_holding_nan_are_refused_not_scored(tmp_path: Path) -> None:
    """NaN weights would score every clip as the first class and print ``nan``."""
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 1})
    read_checkpoint(path)

    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.bias"][1] = float("nan")

    _edit_tensors(path, poison)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == (
        f"{path}: NaN or infinite weights in 1 tensor(s) (first: bias); the file is damaged: "
        "use another checkpoint"
    )


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
    assert str(caught.value) == (
        f"{path}: run {tmp_path.name} was trained on other features than its config's "
        f"front-ends give now ({says}); use the front-end version it was trained with, or "
        "train it again"
    )


def _format_1(path: Path, frontend: dict) -> None:
    """Rewrite ``path`` as avsent wrote checkpoints before per-utterance mode moved to the
    normalisation stage and the feature spec was stored."""
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


# -- optimizer state --------------------------------------------------------------------------


class TracingSGD(torch.optim.SGD):
    """SGD keeping, as a plugin optimizer may, a plain count and a dotted-name tensor per
    parameter: the parts of a state that are not torch's usual tensors."""

    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for param in group["params"]:
                state = self.state[param]
                state["steps_taken"] = state.get("steps_taken", 0) + 1
                state["trace.fast"] = param.detach() * 2
        return loss


def test_plain_and_dotted_optimizer_state_survives_the_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 5)
    optimizer = TracingSGD(model.parameters(), lr=0.1)
    step(model, optimizer)
    step(model, optimizer)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 2}, optimizer)

    saved, read = optimizer.state_dict(), read_checkpoint(path).optimizer_state
    assert read["param_groups"] == saved["param_groups"]
    assert sorted(read["state"]) == sorted(saved["state"]) == [0, 1]
    for pid, entries in saved["state"].items():
        assert read["state"][pid]["steps_taken"] == entries["steps_taken"] == 2
        assert torch.equal(read["state"][pid]["trace.fast"], entries["trace.fast"])
        assert set(read["state"][pid]) == set(entries)


def test_tied_weights_are_saved_as_copies(tmp_path: Path) -> None:
    """safetensors refuses tensors sharing memory; a model tying two layers' weights must
    still save (each name its own copy) and load back equal."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    model[1].weight = model[0].weight
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, {"epoch": 1})
    state = read_checkpoint(path).model_state
    assert torch.equal(state["0.weight"], model[0].weight)
    assert torch.equal(state["1.weight"], model[0].weight)


def _stepped_adam(**options) -> tuple[torch.nn.Linear, torch.optim.Adam]:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), **options)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_the_state_of_an_optimizer_option_fits_its_own_optimizer() -> None:
    """amsgrad keeps a fourth moment: the expected state comes from the live options."""
    model, optimizer = _stepped_adam(amsgrad=True)
    fresh = torch.optim.Adam(model.parameters(), amsgrad=True)
    assert optimizer_state_problem(fresh, optimizer.state_dict()) == ""


def _tamper(saved: dict, group: dict | None = None, state: dict | None = None) -> dict:
    groups = [{**saved["param_groups"][0], **(group or {})}]
    return {"param_groups": groups, "state": {**saved["state"], **(state or {})}}


@pytest.mark.parametrize(
    ("group", "state", "problem"),
    [
        ({"lr": "0.1"}, None, "group 0 lr = '0.1', expected a value like 0.001"),
        ({"amsgrad": 0}, None, "group 0 amsgrad = 0, expected a value like False"),
        ({"betas": [0.9]}, None, "group 0 betas = [0.9], expected a value like (0.9, 0.999)"),
        (
            {"betas": torch.tensor([0.5, 0.5])},
            None,
            "group 0 betas = tensor([0.5000, 0.5000]), expected a value like (0.9, 0.999)",
        ),
        (
            None,
            {1: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2)}},
            "parameter 1 has state ['exp_avg', 'step'], expected ['exp_avg', 'exp_avg_sq', 'step']",
        ),
        (
            None,
            {
                1: {
                    "step": torch.tensor(1.0),
                    "exp_avg": torch.zeros(1),
                    "exp_avg_sq": torch.zeros(2),
                }
            },
            "parameter 1 exp_avg has shape (1,), the parameter (2,)",
        ),
    ],
)
def test_an_optimizer_state_that_does_not_fit_is_named(group, state, problem) -> None:
    model, optimizer = _stepped_adam()
    saved = _tamper(optimizer.state_dict(), group, state)
    del saved["state"][0]  # a parameter with no gradient yet: skipped, not the end of the check
    assert optimizer_state_problem(torch.optim.Adam(model.parameters()), saved) == problem


# -- which checkpoint a run loads --------------------------------------------------------------


def test_checkpoint_path_names_last_by_default_and_best_on_request(tmp_path: Path) -> None:
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoints" / "last.safetensors"
    assert checkpoint_path(tmp_path, "best") == tmp_path / "checkpoints" / "best.safetensors"


def test_load_model_loads_best_by_default_and_last_on_request(tmp_path: Path, tiny_config) -> None:
    config = tiny_config()
    for which, value in (("best", 1.0), ("last", 2.0)):
        model = build_model(config, inputs_for(config), CLASSES)
        with torch.no_grad():
            model.audio_mean.fill_(value)
        save_checkpoint(checkpoint_path(tmp_path, which), model, config_header(config, CLASSES))
    assert load_model(tmp_path)[0].audio_mean.eq(1.0).all()
    assert load_model(tmp_path, "last")[0].audio_mean.eq(2.0).all()


def test_load_model_builds_for_the_features_of_its_config(tmp_path: Path, tiny_config) -> None:
    """A front-end with 64 mel bands gives 76-row inputs, not the paper's 140."""
    data = to_dict(tiny_config())
    data["audio_frontend"]["n_mels"] = 64
    config = from_dict(RunConfig, data)
    _saved_run(tmp_path, config)
    model, _ = load_model(tmp_path)
    assert model.audio_mean.shape[0] == 76


def test_a_checkpoint_of_another_model_is_refused_on_one_line(tmp_path: Path, tiny_config) -> None:
    path = _saved_run(tmp_path, tiny_config())
    _edit_tensors(path, lambda tensors: tensors.pop("model.audio_mean"))
    with pytest.raises(CheckpointError) as caught:
        load_model(tmp_path)
    assert str(caught.value) == (
        f"{path}: does not fit the installed components (RuntimeError: Error(s) in loading "
        "state_dict for AVModel:); was it written by another avsent or plugin version?"
    )
