"""``avsent tune``: candidates scored on inner speaker folds only, the winner tested once."""

from __future__ import annotations

import json
from pathlib import Path

from command_helpers import run_cli, tiny_args

from avsent.training.metrics import HEADLINE


def used_speakers(split_file: Path) -> set[str]:
    """Speakers of the clips a run trained, validated or tested on."""
    clips = json.loads(split_file.read_text())["clips"]
    return {c["speaker"] for c in clips if c["part"] is not None}


def part_speakers(split_file: Path, part: str) -> set[str]:
    clips = json.loads(split_file.read_text())["clips"]
    return {c["speaker"] for c in clips if c["part"] == part}


def test_tune_chooses_on_inner_folds_and_tests_the_winner_on_unseen_speakers(
    workspace: Path,
) -> None:
    run_dir = workspace / "tune"
    args = [
        "tune", "mavsa-di-small", *tiny_args(workspace), "--set", "train.epochs=1",
        # 6 speakers: 3 outer folds of 2, and 2 inner folds of the 4 left
        "--set", f"data.dataset.root={workspace / 'synthetic-6'}",
        "--set", "data.dataset.clips_per_class=6", "--set", "data.split.folds=3",
        "--try", "train.lr=0.02 train.weight_decay=0.0", "--inner-folds", "2",
        "--run-dir", run_dir, "--no-progress",
    ]  # fmt: skip
    out = run_cli(*args).output
    record = json.loads((run_dir / "tune.json").read_text())
    rows = record["candidates"]
    assert [r["candidate"] for r in rows] == [
        "as configured",
        "train.lr=0.02 train.weight_decay=0.0",
    ]
    final_split = run_dir / record["final"]["folder"] / "split.json"
    hidden = part_speakers(final_split, "test")
    assert hidden
    for row in rows:  # every inner fold: no outer test speaker trained, stopped or scored on
        folder = run_dir / row["folder"]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["folds"] == 2
        assert row["inner"] == {m: summary["pooled"][m] for m in HEADLINE}
        for k in (0, 1):
            assert not used_speakers(folder / f"fold-{k}" / "split.json") & hidden
    scores = [r["inner"]["macro_f1"] for r in rows]
    assert record["chosen"] == max(range(2), key=lambda i: (scores[i], -i))
    final = json.loads((run_dir / record["final"]["folder"] / "report.json").read_text())
    assert record["final"]["macro_f1"] == final["macro_f1"]
    assert "inner 2-fold" in out and (run_dir / "tune.md").read_text().count("| `") == 2
    # the same command again retrains nothing; a new candidate gets its own folder
    report = run_dir / rows[1]["folder"] / "fold-0" / "report.json"
    before = report.stat().st_mtime_ns
    run_cli(*args)
    assert report.stat().st_mtime_ns == before
    assert json.loads((run_dir / "tune.json").read_text()) == record
