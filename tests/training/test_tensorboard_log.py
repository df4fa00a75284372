"""TensorBoard logging (train.tensorboard): tags, the loop's epochs in event files, closing."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_loop import Killed, make_trainer

from avsent.training.tensorboard_log import TENSORBOARD_DIR, TensorBoardLog, scalar_tags


def test_scalar_tags_group_each_number_by_its_part() -> None:
    record = {"epoch": 3, "lr": 1e-3, "train_loss": 0.5, "val_loss": 0.75, "val_macro_f1": 0.25,
              "seconds": 2.0, "note": "text"}  # fmt: skip
    assert scalar_tags(record) == {
        "lr": 1e-3,
        "train/loss": 0.5,
        "val/loss": 0.75,
        "val/macro_f1": 0.25,
        "seconds": 2.0,
    }


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per tag in the event files under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_the_loop_writes_every_epoch_to_tensorboard(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    pytest.importorskip("tensorboard", reason="optional dependency: pip install tensorboard")
    log = TensorBoardLog(tmp_path)
    history = make_trainer(tiny_config(epochs=2), feature_sets, tmp_path, callbacks=[log]).fit()
    logged = scalars(tmp_path / TENSORBOARD_DIR)
    for key, tag in [("train_loss", "train/loss"), ("val_accuracy", "val/accuracy"),
                     ("val_macro_f1", "val/macro_f1"), ("lr", "lr"), ("seconds", "seconds")]:  # fmt: skip
        expected = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history.history]
        assert logged[tag] == expected, tag


class Closable:
    def __init__(self) -> None:
        self.closed = 0

    def __call__(self, record: dict) -> None:
        if record["epoch"] == 1:
            raise Killed

    def close(self) -> None:
        self.closed += 1


def test_callbacks_are_closed_even_when_training_fails(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    callback = Closable()
    trainer = make_trainer(tiny_config(epochs=2), feature_sets, tmp_path, callbacks=[callback])
    with pytest.raises(Killed):
        trainer.fit()
    assert callback.closed == 1
