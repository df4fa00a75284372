"""What the loop keeps as "best" and how long its warm-up lasts, checked against the epochs.

Evaluate and predict load ``best.safetensors`` by default, so it must hold the weights of
the best epoch, not the last one's under the best header. The shared tiny config turns
warm-up off; the default (``warmup_epochs = 1``) is checked here over several steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_training import quiet_trainer

from avsent.training import loop
from avsent.training.checkpoint import checkpoint_path, read_checkpoint


def test_best_checkpoint_holds_the_best_epochs_weights(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    # scripted validation scores: epoch 2 is the best, epoch 3 the last
    scores = iter([0.5, 0.9, 0.3])
    real_report = loop.classification_report

    def scripted(y_true: np.ndarray, y_pred: np.ndarray, names: tuple) -> dict:
        return {**real_report(y_true, y_pred, names), "macro_f1": next(scores)}

    monkeypatch.setattr(loop, "classification_report", scripted)
    trainer = quiet_trainer(tiny_config(epochs=3), feature_sets, tmp_path)
    weights: list[dict[str, torch.Tensor]] = []
    trainer.callbacks.append(
        lambda record: weights.append(
            {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        )
    )
    result = trainer.fit()

    assert result.best_epoch == 2 and result.best_score == 0.9
    best = read_checkpoint(checkpoint_path(tmp_path, "best"))
    assert best.state["best_epoch"] == 2 and best.state["epoch"] == 2
    changed = [k for k in weights[1] if not torch.equal(weights[1][k], weights[2][k])]
    assert changed, "epoch 3 must change the weights, or this test proves nothing"
    for name, value in weights[1].items():
        assert torch.equal(best.model_state[name], value), name
    last = read_checkpoint(checkpoint_path(tmp_path, "last"))
    for name in changed:
        assert torch.equal(last.model_state[name], weights[2][name]), name


def test_warmup_lasts_warmup_epochs_of_steps(tmp_path: Path, feature_sets, tiny_config) -> None:
    config = tiny_config(epochs=2, warmup_epochs=1, schedule="constant")
    trainer = quiet_trainer(config, feature_sets, tmp_path)
    steps = trainer.steps_per_epoch
    assert steps == 3  # 24 clips, batch 8: several steps in the warm-up epoch
    real_step, lrs = trainer._step, []

    def recording(batch, generator):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return real_step(batch, generator)

    trainer._step = recording
    trainer.fit()
    base = config.train.lr
    # linear over the first epoch's steps, (s + 1) / (steps + 1), then the full rate
    want = [base * (s + 1) / (steps + 1) for s in range(steps)] + [base] * steps
    assert lrs == pytest.approx(want)
