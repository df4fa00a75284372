"""A whole run: data → model → training → test evaluation → reports in the run folder.

Run folder (see docs/training.md)::

    config.toml  split.json  checkpoints/{last,best}.safetensors
    report.json  report.md  confusion_matrix.png  per_class.png  curves.png
    fold-0/ … fold-k/ + summary.json/.md for k-fold runs
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from avsent.config import atomic_write_text, dump_toml, to_dict
from avsent.data.loader import set_input_stats
from avsent.data.splits import n_folds
from avsent.errors import AvsentError, ConfigError
from avsent.model import build_model, inputs_for
from avsent.training import distributed
from avsent.training.augment import check_augment
from avsent.training.checkpoint import CONFIG_FILE, checkpoint_path, read_checkpoint
from avsent.training.data import RunData, load_clips, prepare_data
from avsent.training.loop import (
    EpochCallback,
    FitResult,
    TrainData,
    Trainer,
    evaluate,
    seed_everything,
)
from avsent.training.metrics import classification_report, summarize_folds
from avsent.training.report import (
    REPORT_JSON,
    results_table,
    summary_table,
    write_report,
    write_summary,
)
from avsent.training.run_lock import hold_run_dir


@attrs.frozen
class RunResult:
    run_dir: Path
    class_names: tuple[str, ...]
    fit: FitResult
    report: dict[str, Any] | None  #: metrics on the test split (validation when no test)


@attrs.frozen
class FoldsResult:
    run_dir: Path
    summary: dict[str, Any]
    reports: list[dict[str, Any]]


def train(
    config: Any,
    *,
    run_dir: str | Path,
    resume: bool = False,
    callbacks: Sequence[EpochCallback] = (),
    console: Console | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``config`` into ``run_dir``; ``resume`` continues from its last checkpoint.

    Under ``torchrun`` every process calls this; rank 0 alone writes and prints.
    """
    check_augment(config)
    ctx = distributed.setup(config.train.device)
    console = console or Console()
    run_dir = Path(run_dir)
    with hold_run_dir(run_dir, enabled=ctx.is_main):  # one process per run folder
        return _train(config, ctx, run_dir, resume, callbacks, console, progress)


def _train(
    config: Any,
    ctx: distributed.DistContext,
    run_dir: Path,
    resume: bool,
    callbacks: Sequence[EpochCallback],
    console: Console,
    progress: bool,
) -> RunResult:
    if not resume and checkpoint_path(run_dir, "last").is_file():
        raise AvsentError(
            f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir"
        )
    if ctx.is_main:
        atomic_write_text(run_dir / CONFIG_FILE, dump_toml(to_dict(config)))
    data = prepare_data(config, run_dir, ctx, console=console, progress=progress)
    seed_everything(config.train.seed)
    model = build_model(config, inputs_for(config), data.class_names)
    set_input_stats(model, data.datasets["train"])
    train_data = TrainData(
        train=data.datasets["train"],
        val=data.datasets["val"],
        train_labels=data.labels["train"],
        class_names=data.class_names,
    )
    trainer = Trainer(
        config,
        model,
        train_data,
        run_dir=run_dir,
        ctx=ctx,
        console=console,
        progress=progress,
        callbacks=callbacks,
    )
    fit = trainer.fit(resume=resume)
    report = _final_report(config, trainer, data, fit, run_dir)
    if ctx.is_main:
        if report is not None:
            write_report(run_dir, report)
            console.print(results_table(report, title=f"{config.recipe}: {report['split']} split"))
        else:
            console.print(
                "no validation or test clips, so no report: add clips or raise "
                "data.split.val_fraction / test_fraction"
            )
        console.print(f"run folder: {run_dir}", markup=False, highlight=False)
    return RunResult(run_dir, data.class_names, fit, report)


def _final_report(
    config: Any, trainer: Trainer, data: RunData, fit: FitResult, run_dir: Path
) -> dict[str, Any] | None:
    """The best checkpoint's metrics on the test split (or validation, lacking a test split)."""
    part = next((p for p in ("test", "val") if len(data.datasets[p])), None)
    if part is None:
        return None
    best = read_checkpoint(checkpoint_path(run_dir, "best"))
    trainer.model.load_state_dict(best.model_state)
    ev = evaluate(trainer.model, data.datasets[part], config=config, ctx=trainer.ctx)
    report = classification_report(ev.y_true, ev.y_pred, data.class_names)
    return {
        "run": str(run_dir),
        "recipe": config.recipe,
        "dataset": config.data.dataset.name,
        "split": part,
        "best_epoch": fit.best_epoch,
        "epochs": len(fit.history),
        "stopped_early": fit.stopped_early,
        **report,
        "loss": ev.loss,
        "history": fit.history,
        "skipped_clips": [list(f) for f in data.failed],
    }


# -- k-fold --------------------------------------------------------------------------------


def fold_count(config: Any) -> int:
    """How many folds ``data.split`` defines (speaker k-fold or leave-one-speaker-out)."""
    method = config.data.split.method
    if method not in ("speaker-kfold", "loso"):
        raise ConfigError(
            "data.split.method", f"k-fold runs need 'speaker-kfold' or 'loso', not {method!r}"
        )
    clips, _ = load_clips(config)
    return n_folds(clips, config.data.split)


def with_fold(config: Any, fold: int) -> Any:
    split = attrs.evolve(config.data.split, fold=fold)
    return attrs.evolve(config, data=attrs.evolve(config.data, split=split))


def train_folds(
    config: Any,
    *,
    run_dir: str | Path,
    resume: bool = False,
    folds: Sequence[int] | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> FoldsResult:
    """Train each fold into ``run_dir/fold-k``; summary (mean ± std) in ``run_dir``.

    With ``resume``, finished folds (those with a report) are kept and the others resumed.
    """
    console = console or Console()
    run_dir = Path(run_dir)
    ctx = distributed.setup(config.train.device)
    with hold_run_dir(run_dir, enabled=ctx.is_main):  # the folds' parent folder too
        return _train_folds(config, ctx, run_dir, resume, folds, console, progress)


def _train_folds(
    config: Any,
    ctx: distributed.DistContext,
    run_dir: Path,
    resume: bool,
    folds: Sequence[int] | None,
    console: Console,
    progress: bool,
) -> FoldsResult:
    folds = list(range(fold_count(config))) if folds is None else list(folds)
    if ctx.is_main:  # the parent's config re-runs (or resumes) every fold
        atomic_write_text(run_dir / CONFIG_FILE, dump_toml(to_dict(config)))
    reports = []
    for k in folds:
        fold_dir = run_dir / f"fold-{k}"
        done = fold_dir / REPORT_JSON
        if resume and done.is_file():
            reports.append(json.loads(done.read_text()))
            continue
        if ctx.is_main:
            console.rule(f"fold {k} ({len(reports) + 1}/{len(folds)})")
        result = train(
            with_fold(config, k),
            run_dir=fold_dir,
            resume=resume and fold_dir.exists(),
            console=console,
            progress=progress,
        )
        if result.report is None:
            raise AvsentError(f"fold {k} has neither a test nor a validation split to report")
        reports.append(result.report)
    summary = {**summarize_folds(reports), "fold_ids": folds, "recipe": config.recipe}
    if ctx.is_main:
        write_summary(run_dir, summary)
        console.print(summary_table(summary))
    return FoldsResult(run_dir, summary, reports)
