"""``avsent tune``: choose among settings by nested speaker cross-validation, then train."""

from __future__ import annotations

import shlex
from pathlib import Path

import rich_click as click

from avsent.cli import console, overrides_option, parse_overrides
from avsent.commands.options import build_config, config_option, data_option


@click.command()
@click.argument("recipe", required=False)
@data_option
@config_option
@overrides_option
@click.option(
    "--try",
    "tries",
    multiple=True,
    metavar="'KEY=VALUE …'",
    help="A candidate setting: one or more `--set`-style overrides in one quoted string. "
    "Repeat for each candidate; the recipe as configured is always tried first.",
)
@click.option(
    "--inner-folds",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    help="Speaker folds over the training speakers that score each candidate.",
)
@click.option(
    "--metric",
    type=click.Choice(["accuracy", "macro_recall", "macro_f1"]),
    default="macro_f1",
    show_default=True,
    help="What chooses, pooled over the inner folds (ties go to the earlier candidate).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the runs go (default `runs/tune-RECIPE`); re-running keeps finished folds.",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def tune(
    recipe: str | None,
    data: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    tries: tuple[str, ...],
    inner_folds: int,
    metric: str,
    run_dir: Path | None,
    no_progress: bool,
) -> None:
    """Pick the best of RECIPE's candidate settings without looking at its test speakers.

    The run's split (`data.split.fold` of `data.split.folds`) is the outer fold: its test
    speakers are set aside. Each candidate is scored by `--inner-folds` speaker folds of
    the remaining speakers; the winner is then trained on the outer split and tested on
    the speakers nothing before it has seen. Writes `tune.md` and `tune.json`.
    """
    from avsent.training.tuning import Candidate
    from avsent.training.tuning import tune as run_tune

    config = build_config(recipe, config_path, data, overrides)
    candidates = [Candidate({})]
    for text in tries:
        candidates.append(Candidate(parse_overrides(tuple(shlex.split(text)))))
    out = run_dir or Path(config.runs_dir) / f"tune-{config.recipe}"
    run_tune(config, candidates, run_dir=out, inner_folds=inner_folds, metric=metric,
             console=console, progress=not no_progress and console.is_terminal)  # fmt: skip
    console.print(f"written: {out / 'tune.md'}", markup=False, highlight=False)
