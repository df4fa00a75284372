"""Metrics: our numpy implementation agrees with scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from avsent.training.metrics import (
    SUMMARY_METRICS,
    classification_report,
    format_mean_std,
    per_speaker,
    pooled_report,
    summarize_folds,
)

NAMES = ("sad", "angry", "surprise", "fear", "happy", "disgusted", "neutral")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 7, 200)
    # mostly right, some confusions, and one class never predicted
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 6, 200))
    report = classification_report(y_true, y_pred, NAMES)

    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for ours, average in (("macro_precision", "precision"), ("macro_recall", "recall")):
        fn = getattr(skm, f"{average}_score")
        assert report[ours] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0))
    assert report["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(7), zero_division=0
    )
    for i, name in enumerate(NAMES):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(p[i])
        assert row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i])
        assert row["support"] == s[i]
    assert report["confusion"] == skm.confusion_matrix(y_true, y_pred, labels=range(7)).tolist()


def test_absent_class_is_left_out_of_macro_average_like_sklearn() -> None:
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 2]  # classes 3..6 neither occur nor are predicted
    report = classification_report(y_true, y_pred, NAMES)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert report["per_class"]["neutral"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }


def test_perfect_predictions_and_json_shape() -> None:
    y = [0, 1, 2, 2]
    report = classification_report(y, y, ("a", "b", "c"))
    assert report["accuracy"] == report["macro_f1"] == report["macro_recall"] == 1.0
    assert report["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    assert report["support"] == 4
    assert report["class_names"] == ["a", "b", "c"]


def test_rejects_mismatched_or_out_of_range_input() -> None:
    with pytest.raises(ValueError, match="labels but"):
        classification_report([0, 1], [0], ("a", "b"))
    with pytest.raises(ValueError, match="class indices"):
        classification_report([0, 2], [0, 1], ("a", "b"))


def test_fold_summary_mean_and_sample_std() -> None:
    reports = [{"accuracy": a, "macro_recall": a, "macro_f1": a} for a in (0.5, 0.7, 0.9)]
    summary = summarize_folds(reports)
    assert summary["folds"] == 3
    assert summary["accuracy"]["mean"] == pytest.approx(0.7)
    assert summary["accuracy"]["std"] == pytest.approx(0.2)  # ddof=1
    assert summary["macro_f1"]["values"] == [0.5, 0.7, 0.9]
    assert format_mean_std(summary["accuracy"]) == "70.0 ± 20.0"
    assert summarize_folds(reports[:1])["accuracy"]["std"] == 0.0


def test_pooled_report_equals_scoring_all_folds_together() -> None:
    names = ("a", "b", "c")
    folds = [([0, 0, 1, 2], [0, 1, 1, 2]), ([1, 1, 2, 2, 0], [1, 2, 2, 0, 0])]
    reports = [classification_report(t, p, names) for t, p in folds]
    pooled = pooled_report(reports)
    everything = classification_report(
        [y for t, _ in folds for y in t], [y for _, p in folds for y in p], names
    )
    assert pooled == everything
    assert pooled["support"] == 9 and pooled["weighted_recall"] == pytest.approx(6 / 9)
    with pytest.raises(ValueError, match="different classes"):
        pooled_report([reports[0], classification_report([0], [0], ("x",))])


def test_per_speaker_figures() -> None:
    rows = per_speaker(["s2", "s1", "s1", "s2"], [0, 1, 1, 0], [0, 1, 0, 1], ("a", "b"))
    assert list(rows) == ["s1", "s2"]
    assert rows["s1"]["support"] == 2 and rows["s1"]["accuracy"] == 0.5
    assert (
        rows["s2"]["accuracy"] == 0.5 and rows["s2"]["macro_recall"] == 0.25
    )  # b predicted, never true


def test_fold_summary_adds_weighted_figures_when_every_report_has_them() -> None:
    reports = [classification_report([0, 1], [0, 0], ("a", "b")) for _ in range(2)]
    assert summarize_folds(reports)["weighted_f1"]["values"] == [reports[0]["weighted_f1"]] * 2
    assert "weighted_f1" not in summarize_folds([{"accuracy": 1, "macro_recall": 1, "macro_f1": 1}])


def test_a_class_predicted_but_absent_from_the_labels_counts_in_macro_averages() -> None:
    # class 2 never occurs but is predicted once: it enters the macro means with 0 scores
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 1, 2]
    report = classification_report(y_true, y_pred, ("a", "b", "c", "d"))
    assert report["macro_recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert report["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert report["macro_precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_labels_of_any_shape_or_whole_number_dtype_are_class_indices() -> None:
    # a column of labels against a flat list, and float-typed whole numbers (a tensor's
    # labels after .numpy()) score like the flat int lists
    want = classification_report([0, 1, 1, 0], [0, 1, 0, 0], ("a", "b"))
    assert classification_report([[0], [1], [1], [0]], [0, 1, 0, 0], ("a", "b")) == want
    assert classification_report([0, 1, 1, 0], [[0], [1], [0], [0]], ("a", "b")) == want
    floats = classification_report(np.array([0.0, 1, 1, 0]), np.array([0.0, 1, 0, 0]), ("a", "b"))
    assert floats == want


def test_out_of_range_error_names_labels_or_predictions() -> None:
    with pytest.raises(ValueError, match=r"^labels must be class indices in \[0, 2\)"):
        classification_report([0, 2], [0, 1], ("a", "b"))
    with pytest.raises(ValueError, match=r"^predictions must be class indices in \[0, 2\)"):
        classification_report([0, 1], [-1, 1], ("a", "b"))


def test_a_class_seen_once_counts_in_macro_averages() -> None:
    report = classification_report([0, 0, 1], [0, 0, 0], ("a", "b"))
    assert report["macro_recall"] == pytest.approx(0.5)  # (1 + 0) / 2, not 1 / 1


def test_no_clips_score_zero_everywhere() -> None:
    report = classification_report([], [], ("a", "b"))
    for metric in (*SUMMARY_METRICS, "macro_precision", "weighted_precision"):
        assert report[metric] == 0.0, metric
    assert report["support"] == 0 and report["confusion"] == [[0, 0], [0, 0]]


def test_weighted_precision_matches_sklearn_and_counts_are_ints() -> None:
    y_true, y_pred = [0, 0, 0, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    report = classification_report(y_true, y_pred, ("a", "b", "c"))
    assert report["weighted_precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="weighted", zero_division=0)
    )
    # counts stay integers in the JSON reports (1, not 1.0)
    assert {type(n) for row in report["confusion"] for n in row} == {int}


def test_per_speaker_scores_only_that_speakers_clips() -> None:
    rows = per_speaker(["s1", "s2", "s2", "s2"], [0, 1, 1, 0], [0, 1, 0, 1], ("a", "b"))
    assert rows["s1"] == {"support": 1, "accuracy": 1.0, "macro_recall": 1.0, "macro_f1": 1.0}
    assert rows["s2"]["support"] == 3 and rows["s2"]["accuracy"] == pytest.approx(1 / 3)


def test_pooling_or_summarising_nothing_is_an_error_and_one_fold_pools_to_itself() -> None:
    with pytest.raises(ValueError, match="^no fold reports to pool$"):
        pooled_report([])
    with pytest.raises(ValueError, match="^no fold reports to summarise$"):
        summarize_folds([])
    report = classification_report([0, 1, 1], [0, 1, 0], ("a", "b"))
    assert pooled_report([report]) == report


def test_two_folds_have_a_sample_std() -> None:
    reports = [{"accuracy": a, "macro_recall": a, "macro_f1": a} for a in (0.5, 0.7)]
    assert summarize_folds(reports)["accuracy"]["std"] == pytest.approx(0.2 / np.sqrt(2))
