"""Reports of a run: JSON (for machines), Markdown + PNG plots (for people), rich tables.

A report is the dict from :func:`avsent.training.metrics.classification_report` plus
context fields (``split``, ``recipe``, ``best_epoch`` …) and the training ``history``.

Every string that comes from data (class names, paths, recipe and dataset names) is
escaped before it reaches rich, so a label such as ``[/x]`` prints as itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from avsent.config import atomic_write_bytes, atomic_write_text
from avsent.training.metrics import HEADLINE, format_mean_std

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

_TITLES = {"accuracy": "accuracy", "macro_recall": "macro recall", "macro_f1": "macro F1"}


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
    """k-fold headline figures as mean ± std (percent), one column per fold."""
    fold_ids = summary.get("fold_ids", range(summary["folds"]))
    table = Table("metric", "mean ± std", *[f"fold {k}" for k in fold_ids])
    for metric in HEADLINE:
        entry = summary[metric]
        table.add_row(_TITLES[metric], format_mean_std(entry), *map(_pct, entry["values"]))
    return table


# -- markdown ---------------------------------------------------------------------------


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
    lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |"]
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
    lines = [
        f"# {folds}-fold results",
        "",
        "| metric | mean ± std (%) | per fold |",
        "|---|---:|---|",
    ]
    for metric in HEADLINE:
        entry = summary[metric]
        per_fold = ", ".join(map(_pct, entry["values"]))
        lines.append(f"| {_TITLES[metric]} | {format_mean_std(entry)} | {per_fold} |")
    return "\n".join(lines) + "\n"


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
    atomic_write_text(out / REPORT_JSON, json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / REPORT_MD, markdown_report(report))
    return [out / name for name in (REPORT_JSON, REPORT_MD, *plots)]


def write_summary(out_dir: str | Path, summary: dict[str, Any]) -> list[Path]:
    out = Path(out_dir)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / SUMMARY_MD, markdown_summary(summary))
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
    lines = [json.dumps({k: r[k] for k in METRIC_COLUMNS if k in r}) for r in history]
    atomic_write_text(out / METRICS_JSONL, "".join(f"{line}\n" for line in lines))
    plot_curves(history, out / CURVES_PNG, best_epoch)
    return [out / METRICS_CSV, out / METRICS_JSONL, out / CURVES_PNG]
