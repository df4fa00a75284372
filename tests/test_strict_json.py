"""Every JSON avsent writes is standard JSON: no bare ``NaN`` or ``Infinity``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from avsent import strict_json
from avsent.training.report import write_report


def _strict_load(text: str):
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    data = {"loss": math.nan, "rows": [1.5, math.inf, (-math.inf, 2)], "name": "NaN"}
    assert _strict_load(strict_json.dumps(data)) == {
        "loss": None,
        "rows": [1.5, None, [None, 2]],
        "name": "NaN",
    }


def test_a_report_with_a_nan_loss_is_valid_json(tmp_path: Path) -> None:
    report = {"class_names": ["a", "b"], "confusion": [[1, 0], [0, 1]], "loss": math.nan,
              "accuracy": 1.0, "macro_f1": 1.0, "macro_recall": 1.0, "support": 2,
              "per_class": {c: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
                            for c in "ab"}}  # fmt: skip
    write_report(tmp_path, report)
    assert _strict_load((tmp_path / "report.json").read_text())["loss"] is None
