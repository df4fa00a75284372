"""The paper's metrics (accuracy, macro recall, macro F1) plus per-class figures.

Implemented with numpy so a report never depends on scikit-learn (tests cross-check
against it). Macro averages run over the classes that occur in the labels or in the
predictions — scikit-learn's default — so a class absent from a small test set neither
counts as a perfect nor as a zero score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: the headline figures, in the order reports show them
HEADLINE = ("accuracy", "macro_recall", "macro_f1")
#: what k-fold and seed summaries give as mean ± std: the headline, then the weighted ones
SUMMARY_METRICS = (*HEADLINE, "weighted_recall", "weighted_f1")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [K, K]: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (an undefined score counts as 0)."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, per-class P/R/F1/support and the confusion matrix.

    ``y_true``/``y_pred`` are class indices into ``class_names``. Weighted averages weigh
    each class by its support, so weighted recall always equals accuracy; on a
    class-balanced split macro recall does too. The result is plain JSON data:
    ``{"accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision",
    "weighted_recall", "weighted_f1", "support",
    "class_names", "per_class": {name: {"precision", "recall", "f1", "support"}},
    "confusion": [[...]]}``.
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    k = len(class_names)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    for name, values in (("labels", y_true), ("predictions", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= k):
            raise ValueError(f"{name} must be class indices in [0, {k})")
    matrix = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    def weighted(values: np.ndarray) -> float:
        return float((values * support).sum() / support.sum()) if support.sum() else 0.0

    return {
        "accuracy": float(tp.sum() / y_true.size) if y_true.size else 0.0,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "weighted_precision": weighted(precision),
        "weighted_recall": weighted(recall),
        "weighted_f1": weighted(f1),
        "support": int(y_true.size),
        "class_names": list(class_names),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": matrix.tolist(),
    }


def summarize_folds(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over fold (or seed) reports of the headline
    figures, and of the weighted ones when every report has them."""
    if not reports:
        raise ValueError("no fold reports to summarise")
    summary: dict[str, Any] = {"folds": len(reports)}
    for metric in (m for m in SUMMARY_METRICS if all(m in r for r in reports)):
        values = np.array([r[metric] for r in reports], dtype=np.float64)
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        summary[metric] = {"mean": float(values.mean()), "std": std, "values": values.tolist()}
    return summary


def pooled_report(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`classification_report` of every fold's test clips scored together.

    Built from the summed confusion matrices, so it equals scoring all the folds'
    predictions at once (what a paper reports as "pooled over folds")."""
    if not reports:
        raise ValueError("no fold reports to pool")
    names = reports[0]["class_names"]
    for r in reports:
        if r["class_names"] != names:
            raise ValueError(f"folds have different classes: {names} and {r['class_names']}")
    matrix = np.sum([np.asarray(r["confusion"], dtype=np.int64) for r in reports], axis=0)
    true, pred = np.indices(matrix.shape).reshape(2, -1)
    counts = matrix.reshape(-1)
    return classification_report(np.repeat(true, counts), np.repeat(pred, counts), names)


def per_speaker(
    speakers: Sequence[str],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    class_names: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Support, accuracy, macro recall and macro F1 of each speaker's clips (sorted ids)."""
    speakers_arr = np.asarray(speakers)
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    out = {}
    for speaker in sorted(set(speakers)):
        rows = speakers_arr == speaker
        report = classification_report(true[rows], pred[rows], class_names)
        out[speaker] = {"support": report["support"], **{m: report[m] for m in HEADLINE}}
    return out


def format_mean_std(entry: dict[str, float]) -> str:
    """``{"mean": 0.8123, "std": 0.0211}`` → ``"81.2 ± 2.1"`` (percent)."""
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"
