"""``avsent reproduce``: both tables end to end on a tiny synthetic set, and resumability."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from command_helpers import run_cli, tiny_args

from avsent.config import to_dict
from avsent.errors import ConfigError
from avsent.reproduce import TABLES, row_config, row_config_dict, select_rows
from avsent.run_config import MODEL_SLOTS, default_run_config, run_config_dict

#: one epoch; the tiny set has 3 speakers, so 3 speaker folds
EXTRA = ("--set", "train.epochs=1", "--set", "data.split.folds=3")


@pytest.mark.parametrize("table", ["table4", "table5"])
def test_reproduce_writes_the_table_in_the_papers_format(workspace: Path, table: str) -> None:
    out = workspace / f"reproduce-{table}"
    args = ["reproduce", table, "--base", "mavsa-di-small", "--seeds", "0", *tiny_args(workspace)]
    run_cli(*args, *EXTRA, "--out", out, "--no-progress")
    rows = list(csv.DictReader((out / f"{table}.csv").open()))
    paper_rows = select_rows(table, None)
    assert [r["model"] for r in rows] == [row.label for row in paper_rows]
    for r in rows:
        assert 0.0 <= float(r["accuracy_mean"]) <= 100.0
    markdown = (out / f"{table}.md").read_text()
    assert "| Model |" in markdown and "Accuracy | Recall | F1" in markdown
    assert (out / f"{table}.png").stat().st_size > 0
    for row in paper_rows:
        assert (out / row.key / "seed-0" / "report.json").is_file()

    # a second call keeps every finished run: nothing is retrained
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-0/report.json")}
    run_cli(*args, *EXTRA, "--out", out, "--no-progress")
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/seed-0/report.json")}
    assert json.loads((out / f"{table}.json").read_text())[0]["runs"] == 1


def test_ablation_swaps_keep_the_base_models_sizes() -> None:
    base = run_config_dict("mavsa-di-small")
    wo_drsn = next(r for r in TABLES["table5"] if r.key == "wo-drsn")
    data = row_config_dict(wo_drsn, base)
    assert data["audio"]["name"] == "resnet-plain"
    assert data["audio"]["widths"] == base["audio"]["widths"]
    assert "shrinkage" not in data["audio"]
    assert data["video"] == base["video"]


def _dotted(change: dict, prefix: str = "") -> dict:
    """{"audio": {"name": "x"}} → {"audio.name": "x"}: a recipe's change as --set overrides."""
    out = {}
    for key, value in change.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("base", ["mavsa-di", "mavsa-di-small"])
@pytest.mark.parametrize("row", [r for r in TABLES["table5"] if r.recipe], ids=lambda r: r.key)
def test_set_and_reproduce_build_the_same_model_for_every_table5_row(base, row) -> None:
    from avsent.model import build_model, count_parameters, inputs_for
    from avsent.recipe import get_recipe

    by_reproduce = row_config(row, run_config_dict(base), {}, seed=0)
    by_set = default_run_config(base, {**_dotted(get_recipe(row.recipe).config), "train.seed": 0})
    for slot in MODEL_SLOTS:
        assert to_dict(getattr(by_reproduce, slot)) == to_dict(getattr(by_set, slot)), slot
    assert to_dict(by_reproduce.faces) == to_dict(by_set.faces)
    if base == "mavsa-di-small":  # built (the small one is quick): identical shapes
        a = build_model(by_reproduce, inputs_for(by_reproduce), ("a", "b"))
        b = build_model(by_set, inputs_for(by_set), ("a", "b"))
        assert count_parameters(a) == count_parameters(b)
        assert {k: v.shape for k, v in a.state_dict().items()} == {
            k: v.shape for k, v in b.state_dict().items()
        }


def test_slot_overrides_reach_only_components_that_have_the_field() -> None:
    base = run_config_dict("mavsa-di-small")
    rnn = TABLES["table4"][0]
    config = row_config(rnn, base, {"audio.widths": [16, 32], "train.epochs": 2}, seed=3)
    assert config.audio.name == "lstm" and config.train.epochs == 2 and config.train.seed == 3
    full = next(r for r in TABLES["table4"] if r.key == "mavsa-di")
    assert row_config(full, base, {"audio.widths": [16, 32]}, seed=0).audio.config.widths == (
        16,
        32,
    )


def test_rows_pick_by_key_and_unknown_keys_are_named() -> None:
    assert [r.key for r in select_rows("table4", ["drsn-audio", "rnn"])] == ["rnn", "drsn-audio"]
    assert "drsn-audio" not in [r.key for r in select_rows("table4", None)]  # not in the paper
    with pytest.raises(ConfigError, match="no row 'lstm'"):
        select_rows("table4", ["lstm"])


def test_a_run_folder_is_reused_only_for_its_own_config(tmp_path: Path) -> None:
    from avsent.config import dump_toml, to_dict
    from avsent.errors import AvsentError
    from avsent.reproduce import check_same_config

    base = run_config_dict("mavsa-di-small")
    row = TABLES["table5"][0]
    config = row_config(row, base, {}, seed=0)
    (tmp_path / "config.toml").write_text(dump_toml(to_dict(config)))
    check_same_config(tmp_path, config)  # the same config: fine
    other = row_config(row, base, {"train.epochs": 2}, seed=0)
    with pytest.raises(AvsentError, match=r"first difference: train\.epochs"):
        check_same_config(tmp_path, other)


def test_a_row_the_paper_lacks_is_written_with_a_dash(tmp_path: Path) -> None:
    from avsent.reproduce import table_view, write_table

    extra = {"model": "DRSN (audio branch)", "modality": "Audio", "runs": 1, "paper": None}
    extra.update({m: {"mean": 50.0, "std": 0.0} for m in ("accuracy", "macro_recall", "macro_f1")})
    write_table(tmp_path, "table4", [extra])
    assert "| – |" in (tmp_path / "table4.md").read_text()
    assert table_view("table4", [extra]).row_count == 1
