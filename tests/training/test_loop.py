"""The training loop on a tiny model: checkpoints, exact resume, early stopping, AMP."""

from __future__ import annotations

import io
import itertools
import types
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from rich.console import Console
from tiny_training import CLASSES, FeatureList

from avsent.data.loader import collate
from avsent.errors import CheckpointError, ConfigError
from avsent.model import build_model, inputs_for
from avsent.training import loop, precision
from avsent.training.augment import AugmentConfig
from avsent.training.checkpoint import checkpoint_path, read_checkpoint
from avsent.training.distributed import DistContext
from avsent.training.loop import (
    TrainData,
    Trainer,
    class_weights,
    evaluate,
    param_groups,
    seed_everything,
)


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


@pytest.mark.parametrize("amp", ["auto", True, False])
def test_autocast_casts_to_the_dtype_precision_chose(tiny_config, amp) -> None:
    config, cpu = tiny_config(amp=amp), torch.device("cpu")
    want = precision.amp_dtype(config.train, cpu)
    with loop.autocast(config, cpu):
        enabled, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    assert enabled == (want is not None)
    if want is not None:
        assert dtype == want


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


# -- what a run prints and records --------------------------------------------------------------


def _printing_trainer(config, sets, run_dir: Path) -> tuple[Trainer, io.StringIO]:
    out = io.StringIO()
    trainer = make_trainer(config, sets, run_dir)
    trainer.console = Console(file=out, width=300, color_system=None)
    return trainer, out


def test_each_epoch_prints_one_line_and_an_early_stop_says_why(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    config = tiny_config(epochs=5, patience=1, lr=1e-12, schedule="constant")
    trainer, out = _printing_trainer(config, feature_sets, tmp_path)
    history = trainer.fit().history
    lines = [
        f"epoch   {r['epoch']}/5  loss {r['train_loss']:.4f}  val loss {r['val_loss']:.4f}  "
        f"acc {100 * r['val_accuracy']:.1f}%  macro-F1 {100 * r['val_macro_f1']:.1f}%  "
        f"lr 1.00e-12  {r['seconds']:.1f}s"
        for r in history
    ]
    lines[0] += " ★ best"  # the first epoch is the best so far; at this rate none improves
    lines.append("early stop: no better validation macro-F1 for 1 epochs")
    assert out.getvalue().splitlines() == lines


def test_without_validation_no_epoch_is_marked_best(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    train_set, _ = feature_sets
    trainer, out = _printing_trainer(tiny_config(epochs=1), (train_set, None), tmp_path)
    (record,) = trainer.fit().history
    assert out.getvalue().splitlines() == [
        f"epoch   1/1  loss {record['train_loss']:.4f}  lr {record['lr']:.2e}  "
        f"{record['seconds']:.1f}s"
    ]


def test_a_resumed_run_says_after_which_epoch(tmp_path: Path, feature_sets, tiny_config) -> None:
    make_trainer(tiny_config(epochs=1), feature_sets, tmp_path).fit()
    trainer, out = _printing_trainer(tiny_config(epochs=2), feature_sets, tmp_path)
    trainer.fit(resume=True)
    assert out.getvalue().splitlines()[0] == "resuming after epoch 1"


def test_an_epoch_record_holds_its_rate_and_times(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    """``lr`` is the last step's rate (cosine: below the base by the last step); the data
    wait is a share of the epoch; ``seconds`` covers training and validation."""
    ticks = (100 + k / 10 for k in itertools.count())  # a clock far from zero, 0.1 s a tick
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    (record,) = make_trainer(tiny_config(epochs=1), feature_sets, tmp_path).fit().history
    assert 0 < record["lr"] < tiny_config().train.lr
    # tick 0 starts the epoch, 1 the first fetch; each of the 3 steps waits one tick
    # (2-1, 4-3, 6-5); the share is taken at tick 8, the seconds at tick 9
    assert record["data_wait_share"] == pytest.approx(3 / 8)
    assert record["seconds"] == pytest.approx(0.9)


# -- how a run is set up ---------------------------------------------------------------------------


def test_param_groups_train_each_scaled_module_at_its_own_rate() -> None:
    inner, outer_only, plain = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    outer = torch.nn.Sequential(outer_only, inner)
    outer.lr_scale, inner.lr_scale = 0.5, 0.1
    model = torch.nn.Sequential(plain, outer)
    groups = {
        g["lr_scale"]: (g["lr"], [id(p) for p in g["params"]]) for g in param_groups(model, 2.0)
    }
    assert groups == {
        1.0: (2.0, [id(p) for p in plain.parameters()]),
        0.5: (1.0, [id(p) for p in outer_only.parameters()]),
        0.1: (pytest.approx(0.2), [id(p) for p in inner.parameters()]),
    }


@pytest.mark.parametrize(
    ("clips", "steps", "drop"), [(1, 1, False), (24, 3, False), (25, 3, True), (26, 4, False)]
)
def test_a_lone_last_sample_is_dropped_not_trained_alone(
    tmp_path: Path, tiny_config, clips, steps, drop
) -> None:
    """BatchNorm cannot train on a batch of one; two left over still make a batch (and a
    single clip in all is trained on: there is nothing else)."""
    trainer = make_trainer(tiny_config(epochs=1), (FeatureList(clips, seed=0), None), tmp_path)
    assert (trainer.steps_per_epoch, trainer.drop_last) == (steps, drop)
    sizes = []
    real_step = trainer._step
    trainer._step = lambda batch, generator: sizes.append(batch.size) or real_step(batch, generator)
    trainer.fit()
    assert len(sizes) == steps and sum(sizes) == clips - drop


@pytest.mark.parametrize(("world", "each"), [(1, 8), (3, 2), (16, 1)])
def test_each_rank_takes_its_share_of_the_global_batch(tiny_config, world, each) -> None:
    assert loop._rank_batch(tiny_config(), DistContext(world_size=world)) == each


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_the_configured_optimizer_and_loss(tmp_path: Path, feature_sets, tiny_config, name, cls):
    config = tiny_config(optimizer=name, weight_decay=0.25, label_smoothing=0.1)
    trainer = make_trainer(config, feature_sets, tmp_path)
    assert type(trainer.optimizer) is cls
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.25
    criterion = trainer.loss_module.criterion
    assert criterion.label_smoothing == 0.1
    assert torch.equal(criterion.weight, class_weights(feature_sets[0].labels, 3))
    unweighted = make_trainer(tiny_config(class_weighting=False), feature_sets, tmp_path / "u")
    assert unweighted.loss_module.criterion.weight is None


def test_grad_clip_clips_the_model_at_the_configured_norm(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    norms: list[float] = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda ps, n: norms.append(n) or real(ps, n)
    )
    trainer = make_trainer(tiny_config(epochs=1, grad_clip=0.5), feature_sets, tmp_path)
    trainer.fit()
    assert norms == [0.5] * trainer.steps_per_epoch
    norms.clear()
    make_trainer(tiny_config(epochs=1), feature_sets, tmp_path / "off").fit()
    assert norms == []


def test_a_loss_that_is_not_finite_stops_the_run_naming_the_rate(
    tmp_path: Path, tiny_config
) -> None:
    broken = FeatureList(8, seed=0)
    broken.items[0].features.audio[0, 0] = np.nan
    trainer = make_trainer(tiny_config(), (broken, None), tmp_path)
    with pytest.raises(ConfigError) as caught:
        trainer.fit()
    assert str(caught.value) == (
        "train.lr: the training loss became nan; lower it or turn off train.amp"
    )


def test_a_resume_on_other_classes_is_refused(tmp_path: Path, feature_sets, tiny_config) -> None:
    make_trainer(tiny_config(epochs=1), feature_sets, tmp_path).fit()
    trainer = make_trainer(tiny_config(epochs=2), feature_sets, tmp_path)
    trainer.data = attrs.evolve(trainer.data, class_names=("x", "y", "z"))
    with pytest.raises(CheckpointError) as caught:
        trainer.fit(resume=True)
    assert str(caught.value) == (
        f"{checkpoint_path(tmp_path, 'last')}: trained on classes ['a', 'b', 'c'], the data now "
        "has ['x', 'y', 'z']"
    )


class Closable:
    def __init__(self) -> None:
        self.records: list[int] = []
        self.closed = 0

    def __call__(self, record: dict) -> None:
        self.records.append(record["epoch"])

    def close(self) -> None:
        self.closed += 1


def test_callbacks_see_every_epoch_and_are_closed_however_fit_ends(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    done = Closable()
    make_trainer(tiny_config(epochs=2), feature_sets, tmp_path, callbacks=[done]).fit()
    assert (done.records, done.closed) == ([1, 2], 1)

    failed = Closable()
    trainer = make_trainer(tiny_config(epochs=2), feature_sets, tmp_path / "f", callbacks=[failed])
    monkeypatch.setattr(trainer, "_step", lambda batch, generator: (_ for _ in ()).throw(Killed))
    with pytest.raises(Killed):
        trainer.fit()
    assert (failed.records, failed.closed) == ([], 1)


def test_evaluate_reports_the_mean_cross_entropy(feature_sets, tiny_config) -> None:
    config = tiny_config()
    model = build_model(config, inputs_for(config), CLASSES).eval()
    _, val_set = feature_sets
    ev = evaluate(model, val_set, config=config)
    losses = []
    with torch.no_grad():
        for sample in val_set:
            batch = collate([sample])
            losses.append(
                float(torch.nn.functional.cross_entropy(model(batch).logits, batch.targets))
            )
    assert ev.loss == pytest.approx(np.mean(losses), rel=1e-5)
