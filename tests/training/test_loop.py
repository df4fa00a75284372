"""The training loop on a tiny model: checkpoints, exact resume, early stopping, AMP."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from rich.console import Console
from tiny_training import CLASSES

from avsent.model import build_model, inputs_for
from avsent.training.augment import AugmentConfig
from avsent.training.checkpoint import checkpoint_path, read_checkpoint
from avsent.training.loop import TrainData, Trainer, class_weights, evaluate, seed_everything


class Killed(Exception):
    """Stands in for a process killed between epochs."""


def make_trainer(config, sets, run_dir: Path, **kwargs) -> Trainer:
    train_set, val_set = sets
    seed_everything(config.train.seed)
    model = build_model(config, inputs_for(config), CLASSES)
    data = TrainData(train_set, val_set, train_set.labels, CLASSES)
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    return Trainer(config, model, data, run_dir=run_dir, console=quiet, progress=False, **kwargs)


def untimed(history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "data_wait_share")} for r in history
    ]


def test_fit_writes_checkpoints_and_learns(tmp_path: Path, feature_sets, tiny_config) -> None:
    trainer = make_trainer(tiny_config(epochs=4), feature_sets, tmp_path)
    result = trainer.fit()
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr"} <= set(
        result.history[0]
    )
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_epoch is not None
    assert result.best_score == max(r["val_macro_f1"] for r in result.history)
    last = read_checkpoint(checkpoint_path(tmp_path, "last"))
    best = read_checkpoint(checkpoint_path(tmp_path, "best"))
    assert last.state["epoch"] == 4 and last.optimizer_state is not None
    assert best.state["best_epoch"] == result.best_epoch and best.optimizer_state is None
    assert last.state["class_names"] == list(CLASSES)


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    config = tiny_config(epochs=3, augment=AugmentConfig(time_masks=1, noise_std=0.1))
    whole = make_trainer(config, feature_sets, tmp_path / "whole").fit()

    def kill_after_first(record: dict) -> None:
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        make_trainer(config, feature_sets, tmp_path / "cut", callbacks=[kill_after_first]).fit()
    assert read_checkpoint(checkpoint_path(tmp_path / "cut", "last")).state["epoch"] == 1
    # a new process: fresh model and optimizer, global RNG somewhere else
    torch.manual_seed(1234)
    resumed_trainer = make_trainer(config, feature_sets, tmp_path / "cut")
    resumed = resumed_trainer.fit(resume=True)

    assert untimed(resumed.history) == untimed(whole.history)
    assert resumed.best_epoch == whole.best_epoch
    a = read_checkpoint(checkpoint_path(tmp_path / "whole", "last"))
    b = read_checkpoint(checkpoint_path(tmp_path / "cut", "last"))
    assert a.model_state.keys() == b.model_state.keys()
    for name in a.model_state:
        assert torch.equal(a.model_state[name], b.model_state[name]), name
    for pid, entries in a.optimizer_state["state"].items():
        for key, value in entries.items():
            assert torch.equal(value, b.optimizer_state["state"][pid][key])


def test_resume_after_a_kill_inside_an_epoch(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    config = tiny_config(epochs=2)
    whole = make_trainer(config, feature_sets, tmp_path / "whole").fit()
    trainer = make_trainer(config, feature_sets, tmp_path / "cut")
    real_step, steps = trainer._step, []

    def dies_in_epoch_two(batch, generator):
        steps.append(1)
        if len(steps) == trainer.steps_per_epoch + 2:  # second step of epoch 2
            raise Killed
        return real_step(batch, generator)

    monkeypatch.setattr(trainer, "_step", dies_in_epoch_two)
    with pytest.raises(Killed):
        trainer.fit()
    resumed = make_trainer(config, feature_sets, tmp_path / "cut").fit(resume=True)
    assert untimed(resumed.history) == untimed(whole.history)


def test_early_stopping_and_resuming_a_finished_run(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    config = tiny_config(epochs=10, patience=2, lr=1e-12, schedule="constant")
    result = make_trainer(config, feature_sets, tmp_path).fit()
    assert result.stopped_early
    assert len(result.history) == 3  # best at 1, then two epochs without improvement
    again = make_trainer(config, feature_sets, tmp_path).fit(resume=True)
    assert untimed(again.history) == untimed(result.history)


def test_without_validation_every_epoch_is_best(tmp_path: Path, feature_sets, tiny_config) -> None:
    train_set, _ = feature_sets
    result = make_trainer(tiny_config(epochs=2), (train_set, None), tmp_path).fit()
    assert result.best_epoch == 2 and result.best_score is None
    assert "val_loss" not in result.history[0]


def test_bf16_autocast_and_mixup_train_on_cpu(tmp_path: Path, feature_sets, tiny_config) -> None:
    config = tiny_config(epochs=1, amp=True, augment=AugmentConfig(mixup_alpha=0.4))
    result = make_trainer(config, feature_sets, tmp_path).fit()
    assert np.isfinite(result.history[0]["train_loss"])


def test_float16_amp_needs_cuda(tmp_path: Path, feature_sets, tiny_config) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = tiny_config(epochs=1, amp=True, amp_dtype="float16")
    with pytest.raises(Exception, match="float16 needs a CUDA device"):
        make_trainer(config, feature_sets, tmp_path).fit()


def test_evaluate_returns_labels_in_dataset_order(feature_sets, tiny_config) -> None:
    config = tiny_config()
    model = build_model(config, inputs_for(config), CLASSES)
    _, val_set = feature_sets
    ev = evaluate(
        model, val_set, config=attrs.evolve(config, train=attrs.evolve(config.train, batch_size=4))
    )
    assert ev.y_true.tolist() == val_set.labels.tolist()
    assert ev.y_pred.shape == (len(val_set),) and np.isfinite(ev.loss)


def test_class_weights_balance_the_classes() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights.tolist() == pytest.approx([4 / 6, 2.0, 0.0])
    assert class_weights(np.array([0, 1, 2]), 3).tolist() == pytest.approx([1.0, 1.0, 1.0])
