"""Reports of a run: JSON (for machines), Markdown + PNG plots (for people), rich tables.

A report is the dict from :func:`avsent.training.metrics.classification_report` plus
context fields (``split``, ``recipe``, ``best_epoch`` …) and the training ``history``.

Every string that comes from data (class names, paths, recipe and dataset names) is
escaped before it reaches rich, so a label such as ``[/x]`` prints as itself.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from avsent import strict_json
from avsent.config import atomic_write_bytes, atomic_write_text
from avsent.training.metrics import (
    HEADLINE,
    SUMMARY_METRICS,
    format_mean_std,
    pooled_report,
    summarize_folds,
)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class.png"
CURVES_PNG = "curves.png"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
#: the columns of metrics.csv, in order: one row per finished epoch (val_* empty without
#: a validation split)
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_macro_recall",
    "val_macro_f1",
    "lr",
    "seconds",
    "data_wait_share",
)

_TITLES = {
    "accuracy": "accuracy",
    "macro_recall": "macro recall",
    "macro_f1": "macro F1",
    "weighted_recall": "weighted recall",
    "weighted_f1": "weighted F1",
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# -- tables ------------------------------------------------------------------------------


def results_table(report: dict[str, Any], title: str | None = None) -> Table:
    """Headline figures, then precision/recall/F1/support per class (percent)."""
    title = escape(title) if title is not None else None
    table = Table("class", "precision", "recall", "F1", "support", title=title)
    for name, row in report["per_class"].items():
        table.add_row(
            escape(name),
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["f1"]),
            str(row["support"]),
        )
    table.add_section()
    for metric in HEADLINE:
        table.add_row(
            f"[bold]{_TITLES[metric]}[/bold]", "", "", f"[bold]{_pct(report[metric])}[/bold]", ""
        )
    table.caption = f"{report['support']} clips"
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    """k-fold figures (percent): pooled over folds, mean ± std over folds, each fold."""
    fold_ids = summary.get("fold_ids", range(summary["folds"]))
    pooled = summary.get("pooled")
    columns = ["metric", *(["pooled"] if pooled else []), "mean ± std"]
    table = Table(*columns, *[f"fold {k}" for k in fold_ids])
    for metric in (m for m in SUMMARY_METRICS if m in summary):
        entry = summary[metric]
        first = [_pct(pooled[metric])] if pooled else []
        table.add_row(_TITLES[metric], *first, format_mean_std(entry), *map(_pct, entry["values"]))
    if pooled:
        table.caption = f"pooled: {pooled['support']} test clips of {len(fold_ids)} folds"
    return table


def seed_summary_table(summary: dict[str, Any]) -> Table:
    """Pooled k-fold figures per seed and their mean ± std over seeds (percent)."""
    seeds = summary["seeds"]
    table = Table("metric", "mean ± std", *[f"seed {s}" for s in seeds])
    for metric in (m for m in SUMMARY_METRICS if m in summary):
        entry = summary[metric]
        table.add_row(_TITLES[metric], format_mean_std(entry), *map(_pct, entry["values"]))
    table.caption = "pooled over folds, then mean ± sample std over seeds"
    return table


# -- summaries ----------------------------------------------------------------------------


def fold_summary(reports: Sequence[dict[str, Any]], fold_ids: Sequence[int]) -> dict[str, Any]:
    """What a paper cites from a k-fold run: figures pooled over folds (the summed
    confusion matrix), mean ± std over folds, which speakers each fold tested, and each
    speaker's figures (from the folds' per-clip predictions)."""
    per_fold, per_speaker = [], {}
    for k, r in zip(fold_ids, reports, strict=True):
        row = {m: r[m] for m in SUMMARY_METRICS if m in r}
        per_fold.append({"fold": k, "test_speakers": r.get("test_speakers", []),
                         "support": r["support"], **row})  # fmt: skip
        for speaker, figures in r.get("per_speaker", {}).items():
            per_speaker[speaker] = {"fold": k, **figures}
    return {
        **summarize_folds(reports),
        "fold_ids": list(fold_ids),
        "pooled": pooled_report(reports),
        "per_fold": per_fold,
        "per_speaker": dict(sorted(per_speaker.items())),
    }


def seed_summary(summaries: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Each seed's pooled k-fold figures, their mean ± sample std over seeds, the mean over
    seeds of the per-fold mean and std, and each speaker's figures averaged over seeds."""
    per_seed = [{"seed": s, **{m: x["pooled"][m] for m in SUMMARY_METRICS}}
                for s, x in zip(seeds, summaries, strict=True)]  # fmt: skip
    out: dict[str, Any] = {"seeds": list(seeds), "per_seed": per_seed}
    out.update({k: v for k, v in summarize_folds(per_seed).items() if k != "folds"})
    out["fold_mean"] = {m: float(np.mean([x[m]["mean"] for x in summaries])) for m in HEADLINE}
    out["fold_std"] = {m: float(np.mean([x[m]["std"] for x in summaries])) for m in HEADLINE}
    speakers = [x.get("per_speaker", {}) for x in summaries]
    common = sorted(set.intersection(*(set(s) for s in speakers))) if speakers else []
    out["per_speaker"] = {
        spk: {m: float(np.mean([s[spk][m] for s in speakers])) for m in ("support", *HEADLINE)}
        for spk in common
    }
    return out


# -- markdown ---------------------------------------------------------------------------


def class_tables(report: dict[str, Any]) -> list[str]:
    """Markdown lines: per-class precision/recall/F1/support, then the confusion matrix."""
    lines = ["", "## Per class", "", "| class | precision | recall | F1 | support |"]
    lines += ["|---|---:|---:|---:|---:|"]
    for name, row in report["per_class"].items():
        lines.append(
            f"| {name} | {_pct(row['precision'])} | {_pct(row['recall'])} | "
            f"{_pct(row['f1'])} | {row['support']} |"
        )
    names = report["class_names"]
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, row in zip(names, report["confusion"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(map(str, row)) + " |")
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    lines = [f"# Results: {report.get('recipe', 'run')} on the {report.get('split', '')} split", ""]
    context = [
        f"- {key.replace('_', ' ')}: {report[key]}"
        for key in ("run", "dataset", "best_epoch", "epochs", "stopped_early")
        if report.get(key) is not None
    ]
    lines += [*context, f"- clips: {report['support']}", ""]
    lines += ["| metric | % |", "|---|---:|"]
    lines += [f"| {_TITLES[m]} | {_pct(report[m])} |" for m in HEADLINE]
    lines += class_tables(report)
    plots = [p for p in (CONFUSION_PNG, PER_CLASS_PNG, CURVES_PNG) if p in report.get("plots", [])]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    skipped = report.get("skipped_clips") or []
    if skipped:
        lines += ["", f"## Skipped clips ({len(skipped)})", ""]
        lines += [f"- `{path}`: {problem}" for path, problem in skipped]
    return "\n".join(lines) + "\n"


def markdown_summary(summary: dict[str, Any]) -> str:
    folds = summary["folds"]
    pooled = summary.get("pooled")
    about = " ".join(f"{k} {summary[k]}" for k in ("recipe", "dataset") if summary.get(k))
    seed = f" (seed {summary['seed']})" if "seed" in summary else ""
    lines = [f"# {folds}-fold results{': ' + about if about else ''}{seed}", ""]
    if pooled:
        lines += [
            f"Pooled: all {pooled['support']} test clips of the {folds} folds scored together "
            "(the summed confusion matrix). Mean ± sample std over the folds beside it.",
            "",
            "| metric | pooled (%) | mean ± std over folds (%) | per fold |",
            "|---|---:|---:|---|",
        ]
    else:
        lines += ["| metric | mean ± std (%) | per fold |", "|---|---:|---|"]
    for metric in (m for m in SUMMARY_METRICS if m in summary):
        entry = summary[metric]
        per_fold = ", ".join(map(_pct, entry["values"]))
        first = f"{_pct(pooled[metric])} | " if pooled else ""
        lines.append(f"| {_TITLES[metric]} | {first}{format_mean_std(entry)} | {per_fold} |")
    if pooled:
        lines += [line.replace("## ", "## Pooled: ", 1) for line in class_tables(pooled)]
        lines += ["", f"![confusion matrix]({CONFUSION_PNG}) ![per class]({PER_CLASS_PNG})"]
    if summary.get("per_fold"):
        lines += ["", "## Folds", "", "| fold | test speakers | clips | accuracy | macro F1 |"]
        lines += ["|---:|---|---:|---:|---:|"]
        for row in summary["per_fold"]:
            speakers = ", ".join(row["test_speakers"]) or "—"
            lines.append(f"| {row['fold']} | {speakers} | {row['support']} | "
                         f"{_pct(row['accuracy'])} | {_pct(row['macro_f1'])} |")  # fmt: skip
    lines += _speaker_lines(summary.get("per_speaker", {}), with_fold=True)
    return "\n".join(lines) + "\n"


def markdown_seed_summary(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [
        f"# {len(seeds)} seeds of a k-fold run: {summary.get('recipe', '')}",
        "",
        "Each seed's figures are pooled over its folds (`seed-N/summary.md`); here their "
        "mean ± sample std over seeds.",
        "",
        "| metric | mean ± std over seeds (%) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---:|" + "---:|" * len(seeds),
    ]
    for metric in (m for m in SUMMARY_METRICS if m in summary):
        entry = summary[metric]
        values = " | ".join(map(_pct, entry["values"]))
        lines.append(f"| {_TITLES[metric]} | {format_mean_std(entry)} | {values} |")
    lines += _speaker_lines(summary.get("per_speaker", {}), with_fold=False, over="seeds")
    return "\n".join(lines) + "\n"


def _speaker_lines(
    rows: dict[str, dict[str, Any]], *, with_fold: bool, over: str = ""
) -> list[str]:
    if not rows:
        return []
    title = "## Per speaker" + (f" (mean over {over})" if over else "")
    head = (
        "| speaker | "
        + ("fold | " if with_fold else "")
        + "clips | accuracy | macro recall | macro F1 |"
    )
    lines = ["", title, "", head, "|---|" + ("---:|" if with_fold else "") + "---:|---:|---:|---:|"]
    for speaker, row in rows.items():
        fold = f"{row['fold']} | " if with_fold else ""
        lines.append(f"| {speaker} | {fold}{row['support']:g} | {_pct(row['accuracy'])} | "
                     f"{_pct(row['macro_recall'])} | {_pct(row['macro_f1'])} |")  # fmt: skip
    return lines


# -- plots ------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(report: dict[str, Any], path: str | Path) -> None:
    """Row-normalised confusion matrix (colour = recall share) annotated with counts."""
    plt = _pyplot()
    counts = np.asarray(report["confusion"], dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    names = report["class_names"]
    size = 1.0 + 0.7 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", color=color)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set_title(f"confusion matrix (accuracy {_pct(report['accuracy'])} %)")
    _save(fig, path)


def plot_per_class(report: dict[str, Any], path: str | Path) -> None:
    """Grouped precision / recall / F1 bars per class (the paper's Fig. 4)."""
    plt = _pyplot()
    names = report["class_names"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(names), 4))
    for offset, metric in zip((-0.27, 0.0, 0.27), ("precision", "recall", "f1"), strict=True):
        values = [100 * report["per_class"][n][metric] for n in names]
        ax.bar(x + offset, values, width=0.27, label=metric if metric != "f1" else "F1")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"per class (macro F1 {_pct(report['macro_f1'])} %)")
    _save(fig, path)


def plot_curves(
    history: Sequence[dict[str, Any]], path: str | Path, best_epoch: int | None = None
) -> None:
    """Loss per epoch, and validation accuracy / macro-F1 when there was a validation split;
    ``best_epoch`` (the checkpoint kept as best) is marked on every panel."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    has_val = any("val_loss" in r for r in history)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(10 if has_val else 5.5, 3.8))
    axes = list(np.atleast_1d(axes))
    loss = axes[0]
    loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    loss.set_title("loss")
    if has_val:
        val = axes[1]
        loss.plot(epochs, [r.get("val_loss") for r in history], marker="o", label="validation")
        for key, label in (("val_accuracy", "accuracy"), ("val_macro_f1", "macro F1")):
            val.plot(epochs, [_percent_or_none(r.get(key)) for r in history], marker="o",
                     label=label)  # fmt: skip
        val.set_ylim(0, 100)
        val.set_title("validation (%)")
    for ax in axes:
        if best_epoch is not None and has_val:  # "best" is by validation macro-F1
            ax.axvline(best_epoch, color="tab:green", linestyle="--", alpha=0.7,
                       label=f"best (epoch {best_epoch})")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def _percent_or_none(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _save(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


# -- files ------------------------------------------------------------------------------


def write_report(out_dir: str | Path, report: dict[str, Any]) -> list[Path]:
    """report.json, report.md and the plots (curves only with a ``history``) in ``out_dir``."""
    out = Path(out_dir)
    report = dict(report)
    plot_confusion(report, out / CONFUSION_PNG)
    plot_per_class(report, out / PER_CLASS_PNG)
    plots = [CONFUSION_PNG, PER_CLASS_PNG]
    if report.get("history"):
        plot_curves(report["history"], out / CURVES_PNG, report.get("best_epoch"))
        plots.append(CURVES_PNG)
    report["plots"] = plots
    atomic_write_text(out / REPORT_JSON, strict_json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / REPORT_MD, markdown_report(report))
    return [out / name for name in (REPORT_JSON, REPORT_MD, *plots)]


def write_summary(out_dir: str | Path, summary: dict[str, Any]) -> list[Path]:
    """summary.json/.md of a k-fold run, and the pooled confusion matrix and per-class plots."""
    out = Path(out_dir)
    written = [out / SUMMARY_JSON, out / SUMMARY_MD]
    if summary.get("pooled"):
        plot_confusion(summary["pooled"], out / CONFUSION_PNG)
        plot_per_class(summary["pooled"], out / PER_CLASS_PNG)
        written += [out / CONFUSION_PNG, out / PER_CLASS_PNG]
    atomic_write_text(out / SUMMARY_JSON, strict_json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / SUMMARY_MD, markdown_summary(summary))
    return written


def write_seed_summary(out_dir: str | Path, summary: dict[str, Any]) -> list[Path]:
    """summary.json/.md over the seeds of a multi-seed k-fold run."""
    out = Path(out_dir)
    atomic_write_text(out / SUMMARY_JSON, strict_json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / SUMMARY_MD, markdown_seed_summary(summary))
    return [out / SUMMARY_JSON, out / SUMMARY_MD]


def write_metrics(
    out_dir: str | Path, history: Sequence[dict[str, Any]], best_epoch: int | None
) -> list[Path]:
    """metrics.csv, metrics.jsonl and curves.png from the epochs finished so far.

    Rewritten whole (atomically) after every epoch from the history the last checkpoint
    holds, so the files always match it: a killed run keeps every finished epoch, and a
    resumed one never repeats or loses a row.
    """
    out = Path(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / METRICS_CSV, buf.getvalue())
    lines = [strict_json.dumps({k: r[k] for k in METRIC_COLUMNS if k in r}) for r in history]
    atomic_write_text(out / METRICS_JSONL, "".join(f"{line}\n" for line in lines))
    plot_curves(history, out / CURVES_PNG, best_epoch)
    return [out / METRICS_CSV, out / METRICS_JSONL, out / CURVES_PNG]
