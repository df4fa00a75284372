"""Checkpoints as one safetensors file each: tensors plus a JSON header, never pickle.

A file holds the model's ``state_dict`` (``model.<name>``), optionally the optimizer's
tensors (``optimizer.<param id>.<name>``), and in the safetensors metadata a JSON
document: the run config, class names, the facts of the features the model was trained on
(``features``: :meth:`avsent.data.cache.EntrySpec.facts`, checked by :func:`load_model`),
epoch, step, history and the optimizer's non-tensor state. One file per checkpoint means
one atomic rename commits all of it, so a run killed while saving keeps its previous
checkpoint intact.

Run folder::

    run/config.toml                 the full RunConfig (re-runnable with --config)
    run/checkpoints/last.safetensors   model + optimizer + training state (for --resume)
    run/checkpoints/best.safetensors   model only, best validation macro-F1
"""

from __future__ import annotations

import inspect
import json
import numbers
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from avsent.config import atomic_write_bytes, from_dict, to_dict
from avsent.data.cache import EntrySpec
from avsent.errors import CheckpointError, ConfigError
from avsent.run_config import upgrade_config_dict

CHECKPOINT_DIR = "checkpoints"
LAST = "last.safetensors"
BEST = "best.safetensors"
CONFIG_FILE = "config.toml"
#: bump when the layout of tensors or header changes (and upgrade the older ones on read)
FORMAT = 2
#: format 1's mel-chroma fields, moved to the normalisation stage in format 2
_HEADER_KEY = "avsent"
_MODEL = "model."
_OPTIMIZER = "optimizer."


@attrs.frozen
class Checkpoint:
    """What a checkpoint file holds, read back."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    state: dict[str, Any]  #: the JSON header (config, class_names, epoch, step, history, ...)


def checkpoint_path(run_dir: str | Path, which: str = "last") -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / (LAST if which == "last" else BEST)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write ``model`` (+ ``optimizer``) and the JSON-able ``state`` atomically to ``path``."""
    tensors = {_MODEL + k: _own(v) for k, v in model.state_dict().items()}
    header = {"format": FORMAT, **state}
    if optimizer is not None:
        opt_tensors, header["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    data = save(tensors, metadata={_HEADER_KEY: json.dumps(header)})
    atomic_write_bytes(path, data)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = json.loads((fh.metadata() or {})[_HEADER_KEY])
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable avsent checkpoint ({exc})") from None
    if isinstance(header, dict) and header.get("format") == 1:
        header = _upgrade_format_1(header, path)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise CheckpointError(f"{path}: checkpoint format {found}, need {FORMAT}")
    problem = _header_problem(header)
    if problem:
        raise CheckpointError(f"{path}: damaged checkpoint header: {problem}")
    model_state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    broken = [k for k, v in model_state.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CheckpointError(
            f"{path}: NaN or infinite weights in {len(broken)} tensor(s) (first: {broken[0]}); "
            "the file is damaged: use another checkpoint"
        )
    optimizer_json = header.pop("optimizer", None)
    optimizer_state = None
    if optimizer_json is not None:
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPTIMIZER)}
        try:
            optimizer_state = _unflatten_optimizer(opt_tensors, optimizer_json)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{path}: damaged optimizer state ({type(exc).__name__}: {exc}); resume from "
                "another checkpoint or start a new run"
            ) from None
    return Checkpoint(model_state, optimizer_state, header)


def _upgrade_format_1(header: dict[str, Any], path: Path) -> dict[str, Any]:
    """A format-1 header in format 2: its config in today's fields
    (:func:`avsent.run_config.upgrade_config_dict`). It stored no feature facts, so
    :func:`load_model` has none to check."""
    config = header.get("config")
    if isinstance(config, dict):
        try:
            config = upgrade_config_dict(config)
        except ConfigError as exc:
            raise CheckpointError(f"{path}: trained with {exc}") from None
    return {**header, "config": config, "format": FORMAT}


def _header_problem(header: dict[str, Any]) -> str:
    """What is wrong with the fields a resumed run trusts ("" when nothing): a wrong type
    would otherwise surface as a traceback epochs later, or not at all."""
    for field in ("epoch", "step", "bad_epochs"):
        value = header.get(field)
        if field in header and not _whole(value):
            return f"{field} must be a whole number >= 0, got {value!r}"
    if header.get("best_epoch") is not None and not _whole(header["best_epoch"]):
        return f"best_epoch must be a whole number or null, got {header['best_epoch']!r}"
    score = header.get("best_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, numbers.Real)):
        return f"best_score must be a number or null, got {score!r}"
    if "finished" in header and not isinstance(header["finished"], bool):
        return f"finished must be true or false, got {header['finished']!r}"
    history = header.get("history")
    if "history" in header and (
        not isinstance(history, list) or not all(isinstance(r, dict) for r in history)
    ):
        return "history must be a list of objects (one per epoch)"
    if "features" in header and not isinstance(header["features"], dict):
        return "features must be an object (the facts of the features trained on)"
    names = header.get("class_names")
    if "class_names" in header and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        return "class_names must be a list of strings"
    return ""


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def optimizer_state_problem(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> str:
    """What in a saved optimizer state does not fit ``optimizer`` ("" when nothing).

    ``load_state_dict`` checks only the group sizes; a wrong hyperparameter type, a missing
    moment or a moment of the wrong shape would fail at the first training step instead.
    """
    groups, live_groups = saved["param_groups"], optimizer.param_groups
    if len(groups) != len(live_groups):
        return f"{len(groups)} parameter groups, this run's optimizer has {len(live_groups)}"
    for i, (group, live) in enumerate(zip(groups, live_groups, strict=True)):
        count, want = len(group.get("params", ())), len(live["params"])
        if count != want:
            return f"group {i} holds {count} parameters, this run's optimizer {want}"
        for key, value in live.items():
            if key != "params" and value is not None and not _same_kind(group.get(key), value):
                return f"group {i} {key} = {group.get(key)!r}, expected a value like {value!r}"
    expected = _state_keys(optimizer)
    params = [p for live in live_groups for p in live["params"]]
    ids = [pid for group in groups for pid in group["params"]]
    for pid, param in zip(ids, params, strict=True):
        state = saved["state"].get(pid)
        if not state:  # a parameter that has had no gradient yet
            continue
        if set(state) != expected:
            return f"parameter {pid} has state {sorted(state)}, expected {sorted(expected)}"
        for name, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                return (f"parameter {pid} {name} has shape {tuple(value.shape)}, the parameter "
                        f"{tuple(param.shape)}")  # fmt: skip
    return ""


def _same_kind(saved: Any, live: Any) -> bool:
    """Whether ``saved`` can stand where ``live`` stood (numbers for numbers, ...)."""
    if isinstance(live, bool):
        return isinstance(saved, bool)
    if isinstance(live, numbers.Real | torch.Tensor):
        return not isinstance(saved, bool) and isinstance(saved, numbers.Real | torch.Tensor)
    if isinstance(live, tuple | list):
        return (isinstance(saved, tuple | list) and len(saved) == len(live)
                and all(_same_kind(s, x) for s, x in zip(saved, live, strict=True)))  # fmt: skip
    return isinstance(saved, type(live))


def _state_keys(optimizer: torch.optim.Optimizer) -> set[str]:
    """The state names ``optimizer``'s class keeps per parameter, from one step on a probe."""
    accepted = inspect.signature(type(optimizer)).parameters
    probe = torch.zeros(1, requires_grad=True)
    kwargs = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    stepper = type(optimizer)([probe], **kwargs)
    probe.grad = torch.zeros(1)
    stepper.step()
    return set(stepper.state[probe])


def load_model(
    run: str | Path, which: str = "best", device: str | torch.device = "cpu"
) -> tuple[Any, Any]:
    """The trained model and its RunConfig, from a run folder or a checkpoint file.

    ``which`` picks ``best`` (falls back to ``last`` when a run has no best yet) or ``last``.
    The model is in eval mode on ``device``.
    """
    from avsent.model import build_model, inputs_for
    from avsent.run_config import RunConfig

    path = Path(run)
    if path.is_dir():
        path = checkpoint_path(run, which)
        if not path.is_file() and which == "best":
            path = checkpoint_path(run, "last")
        if not path.is_file():
            raise CheckpointError(f"{run}: no checkpoint in {run}/{CHECKPOINT_DIR}; is it a run?")
    ckpt = read_checkpoint(path)
    try:
        config = from_dict(RunConfig, ckpt.state["config"])
        _check_features(path, config, ckpt.state.get("features"))
        model = build_model(config, inputs_for(config), tuple(ckpt.state["class_names"]))
        model.load_state_dict(ckpt.model_state)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: does not fit the installed components ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); was it written by another avsent or plugin version?"
        ) from None
    return model.to(device).eval(), config


def _check_features(path: Path, config: Any, stored: Any) -> None:
    """Refuse a model trained on other features than its config's front-ends give now (an
    upgraded front-end plugin, say): fed those, it would score nonsense without a sign.
    A checkpoint that stored no facts (format 1) is not checked."""
    if stored is None:
        return
    difference = EntrySpec.of(config).difference(stored)
    if difference:
        run = path.parent.parent  # RUN/checkpoints/NAME.safetensors
        raise CheckpointError(
            f"{path}: run {run.name} was trained on other features than its config's front-ends "
            f"give now ({difference}); use the front-end version it was trained with, or "
            "train it again"
        )


def config_header(config: Any, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The part of every header that makes a checkpoint usable on its own: the config, the
    class names, and the facts of the features the model takes."""
    return {
        "config": to_dict(config),
        "class_names": list(class_names),
        "features": EntrySpec.of(config).facts(),
    }


def _own(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy: safetensors refuses views and tensors sharing memory."""
    return t.detach().to("cpu", copy=True).contiguous()


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{_OPTIMIZER}{pid}.{name}"] = _own(value)
            else:
                plain.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in data["state"].items()}
    for key, value in tensors.items():
        pid, name = key[len(_OPTIMIZER) :].split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in data["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
