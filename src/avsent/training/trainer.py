"""A whole run: data → model → training → test evaluation → reports in the run folder.

Run folder (see docs/training.md)::

    config.toml  split.json  checkpoints/{last,best}.safetensors  [tensorboard/]
    report.json  report.md  confusion_matrix.png  per_class.png  curves.png
    fold-0/ … fold-k/ + summary.json/.md + pooled confusion_matrix.png, per_class.png
    for k-fold runs; seed-0/ … seed-n/ (each a k-fold run) + summary.json/.md over seeds
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from avsent.config import atomic_write_text, dump_toml, to_dict
from avsent.data.normalise import set_input_stats
from avsent.data.splits import n_folds, resolve_method
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
from avsent.training.metrics import classification_report, per_speaker
from avsent.training.probes import BranchProbes
from avsent.training.report import (
    REPORT_JSON,
    fold_summary,
    results_table,
    seed_summary,
    seed_summary_table,
    summary_table,
    write_report,
    write_seed_summary,
    write_summary,
)
from avsent.training.run_lock import hold_run_dir
from avsent.training.tensorboard_log import TensorBoardLog, check_tensorboard


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


@attrs.frozen
class SeedsResult:
    run_dir: Path
    summary: dict[str, Any]  #: mean ± std over seeds
    runs: list[FoldsResult]  #: one k-fold run per seed, in ``seeds`` order


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
    check_tensorboard(config)
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
    if config.train.probes and ctx.is_main:  # per-branch linear probes → run_dir/probes.csv
        probes = BranchProbes(trainer.model, train_data, run_dir, batch_size=trainer.batch_size,
                              workers=config.train.loader_workers, console=console)  # fmt: skip
        trainer.callbacks.append(probes)
    if config.train.tensorboard and ctx.is_main:  # per-epoch scalars → run_dir/tensorboard/
        trainer.callbacks.append(TensorBoardLog(run_dir))
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
    failed = {path for path, _ in data.failed}
    clips = [
        data.clips[i] for i in getattr(data.split, part) if str(data.clips[i].path) not in failed
    ]
    if len(clips) != len(ev.y_true):
        raise AvsentError(f"{run_dir}: {len(ev.y_true)} predictions for {len(clips)} {part} clips")
    names = data.class_names
    predictions = [
        {"path": str(c.path), "speaker": c.speaker, "label": names[t], "predicted": names[p]}
        for c, t, p in zip(clips, ev.y_true, ev.y_pred, strict=True)
    ]
    speakers = [c.speaker for c in clips]
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
        #: per clip, so results can be pooled or split by speaker after the run
        "predictions": predictions,
        "test_speakers": sorted({s for s in speakers if s}),
        "per_speaker": per_speaker(speakers, ev.y_true, ev.y_pred, names) if all(speakers) else {},
    }


# -- k-fold --------------------------------------------------------------------------------


def fold_count(config: Any) -> int:
    """How many folds ``data.split`` defines (speaker k-fold or leave-one-speaker-out)."""
    clips, _ = load_clips(config)
    split, _ = resolve_method(clips, config.data.split)
    if split.method not in ("speaker-kfold", "loso"):
        raise ConfigError(
            "data.split.method",
            f"k-fold runs need 'speaker-kfold' or 'loso', not {split.method!r}"
            + (" (what 'auto' chose for this data)" if config.data.split.method == "auto" else ""),
        )
    return n_folds(clips, split, config.train.seed)


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
    summary = {
        **fold_summary(reports, folds),
        "recipe": config.recipe,
        "dataset": config.data.dataset.name,
        "seed": config.train.seed,
    }
    if ctx.is_main:
        write_summary(run_dir, summary)
        console.print(summary_table(summary))
    return FoldsResult(run_dir, summary, reports)


def with_seed(config: Any, seed: int) -> Any:
    return attrs.evolve(config, train=attrs.evolve(config.train, seed=seed))


def train_seeds(
    config: Any,
    *,
    run_dir: str | Path,
    seeds: Sequence[int],
    resume: bool = False,
    folds: Sequence[int] | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> SeedsResult:
    """:func:`train_folds` once per seed into ``run_dir/seed-N``; mean ± std over seeds in
    ``run_dir``. One seed's folds say little on a few hundred clips: a seed moves pooled
    accuracy by about a point. With ``resume``, finished folds of every seed are kept."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("train.seed", f"--seeds needs distinct seeds, got {list(seeds)}")
    console = console or Console()
    run_dir = Path(run_dir)
    ctx = distributed.setup(config.train.device)
    with hold_run_dir(run_dir, enabled=ctx.is_main):
        if ctx.is_main:  # the parent's config re-runs every seed (each seed-N/ has its own)
            atomic_write_text(run_dir / CONFIG_FILE, dump_toml(to_dict(config)))
        runs = []
        for seed in seeds:
            if ctx.is_main:
                console.rule(f"seed {seed}")
            runs.append(
                train_folds(with_seed(config, seed), run_dir=run_dir / f"seed-{seed}",
                            resume=resume, folds=folds, console=console, progress=progress)
            )  # fmt: skip
        summary = {**seed_summary([r.summary for r in runs], list(seeds)), "recipe": config.recipe}
        if ctx.is_main:
            write_seed_summary(run_dir, summary)
            console.print(seed_summary_table(summary))
    return SeedsResult(run_dir, summary, runs)
