"""``avsent report``: rebuild a run's report, metrics files and plots from its checkpoints.

For a run that was killed (or whose report was deleted): the best checkpoint so far is
scored on the run's own test split (validation when it has none), and the history comes
from the last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import rich_click as click

from avsent.cli import console
from avsent.commands.options import check_run


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-progress", is_flag=True, help="No progress bars (e.g. in log files).")
def report(run: Path, no_progress: bool) -> None:
    """Rewrite RUN's report.json/.md, metrics.csv/.jsonl and plots from its checkpoints."""
    from avsent.data.splits import Split
    from avsent.errors import AvsentError
    from avsent.training.checkpoint import checkpoint_path, read_checkpoint
    from avsent.training.data import SPLIT_FILE
    from avsent.training.evaluation import evaluate_run
    from avsent.training.report import results_table, write_metrics, write_report

    check_run(run)
    last_path = checkpoint_path(run, "last")
    if not last_path.is_file():
        raise AvsentError(f"{run}: no checkpoint {last_path.relative_to(run)}")
    last = read_checkpoint(last_path).state
    split = Split.load(run / SPLIT_FILE)
    part = next((p for p in ("test", "val") if getattr(split, p)), None)
    if part is None:
        raise AvsentError(f"{run / SPLIT_FILE}: no test or validation clips to report on")
    progress = not no_progress and console.is_terminal
    result = evaluate_run(run, which="best", part=part, progress=progress)
    result.update(
        best_epoch=last["best_epoch"],
        epochs=last["epoch"],
        stopped_early=last["finished"],
        history=last["history"],
    )
    write_metrics(run, last["history"], last["best_epoch"])
    write_report(run, result)
    total = last["config"]["train"]["epochs"]
    done = last["finished"] or last["epoch"] >= total
    state = "finished" if done else f"stopped after epoch {last['epoch']} of {total}"
    console.print(results_table(result, title=f"{result['recipe']}: {part} split"))
    console.print(f"run {state}; best epoch {last['best_epoch']}; report: {run}",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip
