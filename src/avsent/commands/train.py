"""``avsent train``: a recipe (or config file) on a dataset → a run folder with a report."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import rich_click as click

from avsent.cli import console, overrides_option
from avsent.commands.options import (
    build_config,
    config_option,
    data_option,
    missing_components,
    write_plugin_provenance,
)
from avsent.commands.preflight import check_modalities
from avsent.errors import AvsentError

#: set in the processes ``--nproc`` launches, which leave the data checks to their launcher
LAUNCHED_ENV = "AVSENT_NPROC_LAUNCHED"


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
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    help="Data-parallel training in N processes (one per GPU, or gloo on the CPU): the same "
    "command, launched through torch.distributed.run.",
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
    nproc: int | None,
    no_progress: bool,
) -> None:
    """Train RECIPE (default `mavsa-di`) and report on the test split.

    Without `--data` it trains on the built-in synthetic clips. `--nproc N` trains
    data-parallel in N processes; across machines, launch `torchrun … -m avsent train …`.
    A run that fails before its first epoch removes the folder it created.
    """
    from avsent.training import distributed  # torch: imported only when a command runs
    from avsent.training.checkpoint import CONFIG_FILE, checkpoint_path
    from avsent.training.tensorboard_log import check_tensorboard
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
        missing_components(saved)  # a plugin it was trained with may be gone
        config = build_config(None, saved, data, overrides, extra)
    else:
        config = build_config(recipe, config_path, data, overrides, extra)
    check_tensorboard(config)  # an option's missing package: before minutes of reading data
    # one process checks the data: this one, or rank 0 of a job that torchrun started
    if os.environ.get(LAUNCHED_ENV) is None and os.environ.get("RANK", "0") == "0":
        check_modalities(config, _print_dataset_notes(config))
    if nproc is not None and nproc > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(_launch(nproc, _own_args(click.get_current_context())))
    existed = run_dir is not None and run_dir.exists()
    ctx = distributed.setup(config.train.device)
    try:
        run_dir = Path(distributed.broadcast_json(str(run_dir or _new_run_dir(config)), ctx))
        if ctx.is_main and (resume or not checkpoint_path(run_dir, "last").is_file()):
            write_plugin_provenance(run_dir, config)
        progress = not no_progress and console.is_terminal
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
    except Exception:
        if ctx.is_main and not existed and run_dir is not None:
            _remove_unstarted(run_dir)
        raise
    finally:
        distributed.shutdown(ctx)


def _resume_command(run_dir: Path, folds: str | None, seeds: str | None = None) -> str:
    """The command that continues an interrupted run (its config.toml holds every setting)."""
    words = ["avsent", "train", "--resume", "--run-dir", str(run_dir)]
    words += ["--folds", folds] if folds else []
    words += ["--seeds", seeds] if seeds else []
    return shlex.join(words)


def _print_dataset_notes(config: Any) -> list[Any]:
    """What the dataset left out on purpose, counted (e.g. RAVDESS calm), before training:
    a corpus with fewer clips than its documentation says should not go unnoticed.
    Returns the clips (read and checked: a bad dataset fails here, listing why)."""
    from avsent.training.data import dataset_source

    source = dataset_source(config)
    if not console.is_terminal:  # a log file gets a line for the wait (e.g. synthetic clips
        console.print(f"data: reading dataset {config.data.dataset.name!r}", markup=False,
                      highlight=False)  # being generated), where a terminal gets a bar  # fmt: skip
    clips = source.clips()
    for note in getattr(source, "notes", ()):
        console.print(f"data: {note}", markup=False, highlight=False, soft_wrap=True)
    return clips


def _remove_unstarted(run_dir: Path) -> None:
    """Delete a folder this command created for a run that failed before any checkpoint,
    so ``runs/`` lists only runs that trained (a later failure keeps its resumable run)."""
    if run_dir.is_dir() and not any(run_dir.rglob("last.safetensors")):
        shutil.rmtree(run_dir, ignore_errors=True)
        console.print(f"removed {run_dir}: the run failed before its first epoch",
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip


def _own_args(ctx: click.Context) -> list[str]:
    """This ``avsent train`` command's arguments, less ``--nproc``, for each launched process."""
    words: list[str] = [ctx.params["recipe"]] if ctx.params["recipe"] else []
    for name, flag in (("data", "--data"), ("config_path", "--config"), ("run_dir", "--run-dir"),
                       ("epochs", "--epochs"), ("folds", "--folds"), ("seeds", "--seeds")):  # fmt: skip
        if ctx.params[name] is not None:
            words += [flag, str(ctx.params[name])]
    for item in ctx.params["overrides"]:
        words += ["--set", item]
    words += [flag for name, flag in (("resume", "--resume"), ("no_progress", "--no-progress"))
              if ctx.params[name]]  # fmt: skip
    return words


def _launch(nproc: int, args: list[str]) -> int:
    """Run ``avsent train ARGS`` in ``nproc`` processes on this machine; their exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "avsent", "train", *args]  # fmt: skip
    console.print(f"launching {nproc} processes: {shlex.join(command[1:])}", markup=False,
                  highlight=False, soft_wrap=True)  # fmt: skip
    env = {**os.environ, LAUNCHED_ENV: "1"}  # this process has checked the data
    return subprocess.run(command, env=env, check=False).returncode


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
