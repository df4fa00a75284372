"""Reports of a run: JSON (for machines), Markdown + PNG plots (for people), rich tables.

A report is the dict from :func:`avsent.training.metrics.classification_report` plus
context fields (``split``, ``recipe``, ``best_epoch`` …) and the training ``history``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
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

_TITLES = {"accuracy": "accuracy", "macro_recall": "macro recall", "macro_f1": "macro F1"}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# -- tables ------------------------------------------------------------------------------


def results_table(report: dict[str, Any], title: str | None = None) -> Table:
    """Headline figures, then precision/recall/F1/support per class (percent)."""
    table = Table("class", "precision", "recall", "F1", "support", title=title)
    for name, row in report["per_class"].items():
        table.add_row(
            name, _pct(row["precision"]), _pct(row["recall"]), _pct(row["f1"]), str(row["support"])
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


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Loss (train, validation) and validation accuracy / macro-F1 per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    if any("val_loss" in r for r in history):
        left.plot(epochs, [r.get("val_loss") for r in history], marker="o", label="validation")
        right.plot(epochs, [100 * r["val_accuracy"] for r in history], marker="o", label="accuracy")
        right.plot(epochs, [100 * r["val_macro_f1"] for r in history], marker="o", label="macro F1")
        right.set_ylim(0, 100)
        right.legend()
    right.set_title("validation (%)")
    left.set_title("loss")
    left.legend()
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    _save(fig, path)


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
        plot_curves(report["history"], out / CURVES_PNG)
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
