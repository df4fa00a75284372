"""Settings chosen without peeking: nested cross-validation over speakers.

A setting picked by its test score has seen the test speakers, and its score flatters it.
:func:`tune` keeps the run's test fold (the *outer* fold: ``data.split.fold``) out of sight
(:class:`avsent.run_config.OuterSplit`), scores every candidate setting by a speaker k-fold
over the remaining speakers (the *inner* folds, pooled over folds), picks the best, and
only then trains it on the outer split and reports its test figures: a number a paper may
quote as speaker-independent.

Each candidate's inner folds are an ordinary k-fold run (:func:`train_folds`) in a folder
named after a digest of the candidate's whole config, so re-running with the same folder
keeps every finished fold, and a changed candidate never reuses another's results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from avsent.config import atomic_write_text
from avsent.errors import ConfigError
from avsent.run_config import OuterSplit, config_digest, with_overrides
from avsent.training.metrics import HEADLINE
from avsent.training.report import REPORT_JSON
from avsent.training.trainer import train, train_folds

TUNE_JSON = "tune.json"
TUNE_MD = "tune.md"


@attrs.frozen
class Candidate:
    """One setting to try: dotted overrides over the run's config ({} = the config as given)."""

    overrides: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.overrides.items()) or "as configured"


@attrs.frozen
class TuneResult:
    run_dir: Path
    scores: list[float]  #: each candidate's pooled inner-fold ``metric``, in candidate order
    chosen: int
    final: dict[str, Any]  #: the chosen setting's report on the outer split


def inner_config(config: Any, candidate: Candidate, inner_folds: int) -> Any:
    """``config`` with ``candidate`` applied, split into ``inner_folds`` speaker folds of the
    speakers outside the outer test fold."""
    tried = with_overrides(config, candidate.overrides)
    split = tried.data.split
    outer = OuterSplit(fold=split.fold, folds=split.folds)
    nested = attrs.evolve(split, folds=inner_folds, fold=0, outer=outer)
    return attrs.evolve(tried, data=attrs.evolve(tried.data, split=nested))


def tune(
    config: Any,
    candidates: Sequence[Candidate],
    *,
    run_dir: str | Path,
    inner_folds: int = 3,
    metric: str = "macro_f1",
    console: Console | None = None,
    progress: bool = True,
) -> TuneResult:
    """Score ``candidates`` by inner speaker folds, train the best on the outer split.

    Ties go to the earlier candidate, so list the plain config first. The inner folds use
    the config's own split method (``speaker-kfold`` or ``loso``) inside the outer fold.
    """
    if metric not in HEADLINE:
        raise ConfigError("--metric", f"choose one of {', '.join(HEADLINE)}, not {metric!r}")
    if not candidates:
        raise ConfigError("--try", "give at least one candidate setting")
    if config.data.split.outer.fold is not None:
        raise ConfigError("data.split.outer", "tune makes the nesting itself; leave it unset")
    console = console or Console()
    run_dir = Path(run_dir)
    rows = []
    for i, candidate in enumerate(candidates):
        inner = inner_config(config, candidate, inner_folds)
        folder = run_dir / f"inner-{config_digest(inner)}"
        console.rule(f"candidate {i + 1}/{len(candidates)}: {candidate.label}")
        result = train_folds(inner, run_dir=folder, resume=True, console=console,
                             progress=progress)  # fmt: skip
        pooled = result.summary["pooled"]
        rows.append({"candidate": candidate.label, "overrides": candidate.overrides,
                     "folder": folder.name, "inner": {m: pooled[m] for m in HEADLINE}})  # fmt: skip
    scores = [row["inner"][metric] for row in rows]
    chosen = max(range(len(scores)), key=lambda i: (scores[i], -i))
    final_config = with_overrides(config, candidates[chosen].overrides)
    final_dir = run_dir / f"final-{config_digest(final_config)}"
    console.rule(
        f"chosen by the inner folds: {candidates[chosen].label}; trained on the outer split"
    )
    final = _final_report(final_config, final_dir, console, progress)
    record = {
        "metric": metric,
        "inner_folds": inner_folds,
        "outer_fold": config.data.split.fold,
        "outer_folds": config.data.split.folds,
        "candidates": rows,
        "chosen": chosen,
        "final": {"folder": final_dir.name, **{m: final[m] for m in HEADLINE if m in final}},
    }
    atomic_write_text(run_dir / TUNE_JSON, json.dumps(record, indent=1) + "\n")
    atomic_write_text(run_dir / TUNE_MD, tune_markdown(record))
    console.print(tune_table(record))
    return TuneResult(run_dir, scores, chosen, final)


def _final_report(config: Any, run_dir: Path, console: Console, progress: bool) -> dict[str, Any]:
    """The run's report: read when the run finished before, else trained (or resumed)."""
    done = run_dir / REPORT_JSON
    if done.is_file():
        return json.loads(done.read_text())
    result = train(config, run_dir=run_dir, resume=run_dir.exists(), console=console,
                   progress=progress)  # fmt: skip
    return result.report or {}


def tune_table(record: dict[str, Any]) -> Table:
    metric = record["metric"]
    table = Table("candidate", f"inner {metric}", "chosen",
                  title=f"inner {record['inner_folds']}-fold over the training speakers "
                        f"(outer fold {record['outer_fold']} unseen)")  # fmt: skip
    for i, row in enumerate(record["candidates"]):
        mark = "✓" if i == record["chosen"] else ""
        table.add_row(escape(row["candidate"]), f"{100 * row['inner'][metric]:.1f}", mark)
    final = record["final"]
    if metric in final:
        figures = " / ".join(f"{100 * final[m]:.1f}" for m in HEADLINE)
        table.caption = f"chosen setting on the outer test fold ({' / '.join(HEADLINE)}): {figures}"
    return table


def tune_markdown(record: dict[str, Any]) -> str:
    metric = record["metric"]
    lines = [
        "# Settings chosen by nested cross-validation",
        "",
        f"Inner {record['inner_folds']}-fold speaker cross-validation over the speakers "
        f"outside outer fold {record['outer_fold']} of {record['outer_folds']}, pooled over "
        f"the inner folds; chosen by {metric}; the outer test speakers were seen only by "
        "the final run.",
        "",
        "| candidate | " + " | ".join(f"inner {m}" for m in HEADLINE) + " | chosen |",
        "|---|" + "---|" * (len(HEADLINE) + 1),
    ]
    for i, row in enumerate(record["candidates"]):
        figures = " | ".join(f"{100 * row['inner'][m]:.1f}" for m in HEADLINE)
        lines.append(
            f"| `{row['candidate']}` | {figures} | {'✓' if i == record['chosen'] else ''} |"
        )
    final = record["final"]
    if metric in final:
        figures = " / ".join(f"{100 * final[m]:.1f}" for m in HEADLINE)
        lines += ["", f"Chosen setting on the outer test fold ({' / '.join(HEADLINE)}): {figures}"]
    return "\n".join(lines) + "\n"
