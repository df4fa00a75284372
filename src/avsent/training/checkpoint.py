"""Checkpoints as one safetensors file each: tensors plus a JSON header, never pickle.

A file holds the model's ``state_dict`` (``model.<name>``), optionally the optimizer's
tensors (``optimizer.<param id>.<name>``), and in the safetensors metadata a JSON
document: the run config, class names, epoch, step, history and the optimizer's
non-tensor state. One file per checkpoint means one atomic rename commits all of it, so a
run killed while saving keeps its previous checkpoint intact.

Run folder::

    run/config.toml                 the full RunConfig (re-runnable with --config)
    run/checkpoints/last.safetensors   model + optimizer + training state (for --resume)
    run/checkpoints/best.safetensors   model only, best validation macro-F1
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from avsent.config import atomic_write_bytes, from_dict, to_dict
from avsent.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.safetensors"
BEST = "best.safetensors"
CONFIG_FILE = "config.toml"
#: bump when the layout of tensors or header changes
FORMAT = 1
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
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise CheckpointError(f"{path}: checkpoint format {found}, need {FORMAT}")
    problem = _header_problem(header)
    if problem:
        raise CheckpointError(f"{path}: damaged checkpoint header: {problem}")
    model_state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
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


def _header_problem(header: dict[str, Any]) -> str:
    """What is wrong with the fields a resumed run trusts ("" when nothing)."""
    for field in ("epoch", "step"):
        value = header.get(field)
        if field in header and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{field} must be a whole number >= 0, got {value!r}"
    if "history" in header and not isinstance(header["history"], list):
        return f"history must be a list, got {type(header['history']).__name__}"
    names = header.get("class_names")
    if "class_names" in header and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        return "class_names must be a list of strings"
    return ""


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
        model = build_model(config, inputs_for(config), tuple(ckpt.state["class_names"]))
        model.load_state_dict(ckpt.model_state)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: does not fit the installed components ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); was it written by another avsent or plugin version?"
        ) from None
    return model.to(device).eval(), config


def config_header(config: Any, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The part of every header that makes a checkpoint usable on its own."""
    return {"config": to_dict(config), "class_names": list(class_names)}


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
