"""A tampered or damaged last checkpoint stops ``--resume`` with one line naming the field,
before any training step (not a traceback at the first step, nor a silent wrong run)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from tiny_training import quiet_trainer

from avsent.errors import CheckpointError
from avsent.training.checkpoint import checkpoint_path

Tensors = dict[str, torch.Tensor]


def _rewrite(path: Path, header: Callable[[dict], None], tensors: Callable[[Tensors], Tensors]):
    """Change a checkpoint's JSON header and tensors in place, as a hand-edited file would."""
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["avsent"])
    header(meta)
    path.write_bytes(save(tensors(load_file(str(path))), metadata={"avsent": json.dumps(meta)}))


def _first_lr(meta: dict) -> None:
    meta["optimizer"]["param_groups"][0]["lr"] = "fast"


def _cut_moments(tensors: Tensors) -> Tensors:
    return {k: v[:1] if k.endswith(".exp_avg") and v.dim() else v for k, v in tensors.items()}


def _keep(x):
    return x


CASES = {
    "epoch text": (lambda m: m.update(epoch="abc"), _keep, "epoch must be a whole number"),
    "negative epoch": (lambda m: m.update(epoch=-5), _keep, "got -5"),
    "score text": (lambda m: m.update(best_score="x"), _keep, "best_score must be a number"),
    "finished text": (lambda m: m.update(finished="no"), _keep, "finished must be true or false"),
    "history numbers": (lambda m: m.update(history=[1, 2]), _keep, "history must be a list of"),
    "missing field": (lambda m: m.pop("bad_epochs"), _keep, "no bad_epochs"),
    "missing optimizer": (lambda m: m.pop("optimizer"), _keep, "no optimizer"),
    "lr text": (_first_lr, _keep, "group 0 lr = 'fast'"),
    "moment cut": (lambda m: None, _cut_moments, "exp_avg has shape"),
    "moment gone": (
        lambda m: None,
        lambda t: {k: v for k, v in t.items() if not k.endswith(".exp_avg")},
        "expected ['exp_avg', 'exp_avg_sq', 'step']",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_last_checkpoint_stops_resume_naming_the_field(
    tmp_path: Path, feature_sets, tiny_config, case: str
) -> None:
    config = tiny_config(epochs=2)
    quiet_trainer(config, feature_sets, tmp_path).fit()
    header, tensors, message = CASES[case]
    _rewrite(checkpoint_path(tmp_path, "last"), header, tensors)
    trainer = quiet_trainer(config, feature_sets, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(CheckpointError, match="damaged") as caught:
        trainer.fit(resume=True)
    assert message in str(caught.value)
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_a_whole_optimizer_state_fits() -> None:
    from avsent.training.checkpoint import optimizer_state_problem

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()
    assert optimizer_state_problem(torch.optim.AdamW(model.parameters()), saved) == ""
    assert "2 parameter groups" in optimizer_state_problem(
        optimizer, {**saved, "param_groups": saved["param_groups"] * 2}
    )
