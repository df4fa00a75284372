"""``avsent train``: a recipe (or config file) on a dataset → a run folder with a report."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import rich_click as click

from avsent.cli import console, overrides_option
from avsent.commands.options import build_config, config_option, data_option
from avsent.errors import AvsentError


@click.command()
@click.argument("recipe", required=False)
@data_option
@config_option
@overrides_option
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the run is written (default: `runs/RECIPE-DATE-TIME`).",
)
@click.option("--resume", is_flag=True, help="Continue the run in `--run-dir` where it stopped.")
@click.option("--epochs", type=click.IntRange(min=1), help="Shortcut for `--set train.epochs=N`.")
@click.option(
    "--folds",
    metavar="all|K,K...",
    help="k-fold run (`data.split.method` speaker-kfold or loso): every fold, or the listed ones.",
)
@click.option(
    "--seeds",
    metavar="N,N...",
    help="With `--folds`: the k-fold run once per seed into `RUN/seed-N/`, mean ± std over seeds.",
)
@click.option("--no-progress", is_flag=True, help="No progress bars (e.g. in log files).")
def train(
    recipe: str | None,
    data: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    run_dir: Path | None,
    resume: bool,
    epochs: int | None,
    folds: str | None,
    seeds: str | None,
    no_progress: bool,
) -> None:
    """Train RECIPE (default `mavsa-di`) and report on the test split.

    Without `--data` it trains on the built-in synthetic clips. Launch the same command
    under `torchrun --nproc_per_node N` for data-parallel training on N GPUs or processes.
    """
    from avsent.training import distributed  # torch: imported only when a command runs
    from avsent.training.checkpoint import CONFIG_FILE
    from avsent.training.trainer import train as run_training
    from avsent.training.trainer import train_folds, train_seeds

    if seeds is not None and folds is None:
        raise click.UsageError("--seeds repeats a k-fold run: add --folds all (or a fold list)")
    seed_list = _parse_seeds(seeds) if seeds is not None else None
    extra = {"train.epochs": epochs} if epochs else {}
    if resume:
        if run_dir is None:
            raise click.UsageError("--resume needs the --run-dir of the run to continue")
        saved = run_dir / CONFIG_FILE
        if not saved.is_file():
            raise AvsentError(f"{run_dir}: no {CONFIG_FILE}; nothing to resume")
        if recipe or config_path:
            raise click.UsageError("--resume reads the run's own config; drop RECIPE/--config")
        if folds is None and any(run_dir.glob("fold-*")):
            raise click.UsageError("this is a k-fold run: resume it with --folds all")
        if seeds is None and any(run_dir.glob("seed-*")):
            raise click.UsageError("this is a multi-seed run: resume it with --folds all --seeds …")
        config = build_config(None, saved, data, overrides, extra)
    else:
        config = build_config(recipe, config_path, data, overrides, extra)
    ctx = distributed.setup(config.train.device)
    try:
        run_dir = Path(distributed.broadcast_json(str(run_dir or _new_run_dir(config)), ctx))
        progress = not no_progress
        if ctx.is_main:
            _print_dataset_notes(config)
        if seed_list is not None:
            train_seeds(
                config,
                run_dir=run_dir,
                seeds=seed_list,
                resume=resume,
                folds=_parse_folds(folds),
                console=console,
                progress=progress,
            )
        elif folds is None:
            run_training(config, run_dir=run_dir, resume=resume, console=console, progress=progress)
        else:
            train_folds(
                config,
                run_dir=run_dir,
                resume=resume,
                folds=_parse_folds(folds),
                console=console,
                progress=progress,
            )
    except KeyboardInterrupt:
        if ctx.is_main and run_dir is not None and (run_dir / CONFIG_FILE).is_file():
            console.print(f"interrupted; continue with: {_resume_command(run_dir, folds, seeds)}",
                          markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        raise
    finally:
        distributed.shutdown(ctx)


def _resume_command(run_dir: Path, folds: str | None, seeds: str | None = None) -> str:
    """The command that continues an interrupted run (its config.toml holds every setting)."""
    words = ["avsent", "train", "--resume", "--run-dir", str(run_dir)]
    words += ["--folds", folds] if folds else []
    words += ["--seeds", seeds] if seeds else []
    return shlex.join(words)


def _print_dataset_notes(config: Any) -> None:
    """What the dataset left out on purpose, counted (e.g. RAVDESS calm), before training:
    a corpus with fewer clips than its documentation says should not go unnoticed."""
    from avsent.training.data import dataset_source

    source = dataset_source(config)
    source.clips()  # reads and checks the clips; a bad dataset fails here, listing why
    for note in getattr(source, "notes", ()):
        console.print(f"data: {note}", markup=False, highlight=False, soft_wrap=True)


def _new_run_dir(config: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.runs_dir) / f"{config.recipe}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise click.BadParameter(
            "expected distinct seeds (0, 1, ...) like `0,1,2`", param_hint="--seeds"
        )
    return seeds


def _parse_folds(text: str) -> list[int] | None:
    if text == "all":
        return None
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        folds = [-1]
    if min(folds) < 0:
        raise click.BadParameter(
            "expected `all` or fold numbers (0, 1, ...) like `0,2`", param_hint="--folds"
        )
    return folds
