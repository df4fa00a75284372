"""Text from data never reaches rich as markup: a class labelled ``[/x]`` prints as itself."""

from __future__ import annotations

import json
from pathlib import Path

from command_helpers import run_cli, split_records, tiny_args

LABEL = "[/x]"  #: a closing tag with no opening one: rich raises MarkupError on it


def test_a_label_that_looks_like_markup_survives_train_evaluate_predict_and_report(
    trained_run: Path, workspace: Path, tmp_path: Path
) -> None:
    clips = split_records(trained_run)
    manifest = tmp_path / "clips.csv"
    rows = [f'"{c["path"]}",{LABEL if c["label"] == "sad" else c["label"]}\n' for c in clips]
    manifest.write_text("path,label\n" + "".join(rows))
    values = tiny_args(workspace)[1::2]  # the FIELD=VALUE after each --set
    model_sets = [x for v in values if not v.startswith("data.dataset.") for x in ("--set", v)]
    run_dir = tmp_path / "run"
    out = run_cli("train", "mavsa-di-small", "--data", manifest, *model_sets, "--epochs", "1",
                  "--run-dir", run_dir, "--no-progress").output  # fmt: skip
    assert f"│ {LABEL}" in out  # the per-class table row
    assert f"│ {LABEL}" in run_cli("evaluate", run_dir).output
    assert f"│ {LABEL}" in run_cli("report", run_dir, "--no-progress").output
    sad = next(c["path"] for c in clips if c["label"] == "sad")
    printed = run_cli("predict", run_dir, sad).output
    assert "top 3 (%)" in printed
    scores = json.loads(run_cli("predict", run_dir, sad, "--json").output)[0]["probabilities"]
    assert LABEL in scores
