"""What a user watching the terminal sees: a progress bar per epoch on the run's console,
erased when the epoch ends, then one plain summary line however narrow the terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from tiny_training import CLASSES, quiet_trainer

from avsent.model import build_model, inputs_for
from avsent.training.loop import TrainData, Trainer, seed_everything

BAR = "[━╸╺ ]+"  # a bar's characters, whatever its fill


def terminal_trainer(config, sets, run_dir: Path) -> tuple[Trainer, io.StringIO]:
    """A trainer with the default progress setting, on a narrow colour terminal."""
    train_set, val_set = sets
    seed_everything(config.train.seed)
    model = build_model(config, inputs_for(config), CLASSES)
    data = TrainData(train_set, val_set, train_set.labels, CLASSES)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, color_system="standard")
    return Trainer(config, model, data, run_dir=run_dir, console=console), out


def test_the_bar_is_drawn_on_the_runs_console_and_erased_for_the_summary(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    trainer, out = terminal_trainer(tiny_config(epochs=1), feature_sets, tmp_path)
    (record,) = trainer.fit().history
    text = out.getvalue()
    assert "epoch 1/1 " in text, "no progress bar on the run's console"
    after_bar = text[text.rindex("epoch 1/1 ") :]
    summary = (
        f"epoch   1/1  loss {record['train_loss']:.4f}  val loss {record['val_loss']:.4f}  "
        f"acc {100 * record['val_accuracy']:.1f}%  macro-F1 {100 * record['val_macro_f1']:.1f}%"
    )
    # the bar's line is cleared (cursor up, erase line) and the summary written in its place,
    # in one piece: no colour codes inside, no line break at the terminal's 60 columns
    assert "\x1b[1A\x1b[2K" + summary in after_bar


def plain(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue().rstrip("\n")


def test_the_bar_counts_steps_and_shows_the_running_loss(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    """Drawn as soon as the epoch starts (no step has a loss yet) and at its end."""
    trainer = quiet_trainer(tiny_config(epochs=2), feature_sets, tmp_path)
    first_draws: list[str] = []
    bars: list[Progress] = []
    real_bar = trainer._bar

    def bar(epoch: int) -> Progress:
        progress = real_bar(epoch)
        real_add = progress.add_task

        def add_task(*args, **kwargs):
            task = real_add(*args, **kwargs)
            first_draws.append(plain(progress.get_renderable()))
            return task

        progress.add_task = add_task
        bars.append(progress)
        return progress

    trainer._bar = bar
    history = trainer.fit().history
    steps = trainer.steps_per_epoch
    for epoch, (first, progress, record) in enumerate(
        zip(first_draws, bars, history, strict=True), start=1
    ):
        assert re.fullmatch(rf"epoch {epoch}/2 {BAR} 0/{steps} loss nan 0:00:00", first), first
        last = plain(progress.get_renderable())
        want = rf"epoch {epoch}/2 {BAR} {steps}/{steps} loss {record['train_loss']:.4f} 0:00:0\d"
        assert re.fullmatch(want, last), last
