"""The paper's Table 4 (baselines) and Table 5 (ablations) on any dataset, one command each.

Every row is trained under the same protocol: the base recipe's front-ends, data, split and
training settings, with only the model changed. A row names a recipe. A recipe derived
from another (the ablations, the unimodal branches: ``Recipe.base``) is a *change*, and
the row lays that change over the base by the one slot-merge rule
(:func:`avsent.config.merge`), so ``--base mavsa-di-small`` ablates the small model and
``avsent train mavsa-di-small --set audio.name=resnet-plain`` builds the very same "w/o
DRSN". A stand-alone recipe (the baselines) gives its whole model slots. Each (row, seed)
is one run folder; a finished run (its ``report.json`` exists) is never retrained, so an
interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from rich.console import Console
from rich.table import Table

from avsent import strict_json
from avsent.config import (
    NONE,
    apply_overrides,
    atomic_write_text,
    from_dict,
    load_toml,
    merge,
    to_dict,
)
from avsent.errors import AvsentError, ConfigError
from avsent.recipe import get_recipe
from avsent.registry import get_registry
from avsent.run_config import MODEL_SLOTS, RunConfig, run_config_dict, upgrade_config_dict
from avsent.training.checkpoint import CONFIG_FILE
from avsent.training.metrics import HEADLINE, summarize_folds


@attrs.frozen
class Row:
    """One line of a table: a recipe's model and the paper's figures for it (percent)."""

    key: str  #: folder name of its runs
    label: str
    modality: str
    paper: tuple[float, float, float] | None  #: accuracy, recall, F1 in the paper (None: not in it)
    recipe: str | None = None  #: the row's model (None: the base itself)


_FULL = Row("mavsa-di", "MAVSA-DI (ours)", "Audio+Visual", (85.47, 82.06, 83.24))

TABLES: dict[str, tuple[Row, ...]] = {
    "table4": (
        Row("rnn", "RNN", "Audio", (67.24, 66.07, 66.52), recipe="rnn"),
        Row("densenet3d", "3D-DenseNet", "Visual", (74.13, 73.70, 72.50), recipe="densenet3d"),
        Row("vcan", "VCAN", "Audio+Visual", (77.10, 76.02, 76.54), recipe="vcan"),
        Row("cmavf-ad", "CMAVF-AD", "Audio+Visual", (79.42, 77.28, 78.34), recipe="cmavf-ad"),
        _FULL,
        # not in the paper: MAVSA-DI's branches alone, set beside the unimodal baselines
        Row("drsn-audio", "DRSN (audio branch)", "Audio", None, recipe="drsn-audio"),
        Row("i3dd-visual", "I3DD (visual branch)", "Visual", None, recipe="i3dd-visual"),
    ),
    "table5": (
        Row("wo-drsn", "w/o DRSN", "Audio+Visual", (71.82, 71.06, 70.36), "mavsa-di-wo-drsn"),
        Row("wo-i3dd", "w/o I3DD", "Audio+Visual", (66.05, 63.38, 62.74), "mavsa-di-wo-i3dd"),
        Row("wo-ima", "w/o IMA", "Audio+Visual", (76.37, 73.84, 74.65), "mavsa-di-wo-ima"),
        Row("wo-cma", "w/o CMA", "Audio+Visual", (80.29, 78.26, 79.57), "mavsa-di-wo-cma"),
        _FULL,
    ),
}


def row_config_dict(row: Row, base: dict[str, Any]) -> dict[str, Any]:
    """The base run config with this row's model in the model slots."""
    if row.recipe is None:
        return dict(base)
    recipe = get_recipe(row.recipe)
    if recipe.base is not None:  # a change of some model: lay it over this base
        data = merge(base, recipe.config, RunConfig)
    else:
        own = run_config_dict(row.recipe)
        data = {**base, **{slot: own[slot] for slot in MODEL_SLOTS}}
    data["recipe"] = row.recipe
    return data


def row_config(row: Row, base: dict[str, Any], overrides: dict[str, Any], seed: int) -> RunConfig:
    """The run config of one (row, seed).

    An override of a model slot's field reaches only the rows whose component in that slot
    has the field (``audio.widths`` shapes DRSN, not the RNN baseline's LSTM). The full
    model is a row of both tables, so a misspelled field still fails there.
    """
    data = row_config_dict(row, base)
    kept = {k: v for k, v in overrides.items() if _applies(k, data)}
    return from_dict(RunConfig, apply_overrides(data, {**kept, "train.seed": seed}, RunConfig))


def _applies(key: str, data: dict[str, Any]) -> bool:
    slot, _, field = key.partition(".")
    if slot not in MODEL_SLOTS or field == "name" or "." in field:
        return True
    name = data[slot]["name"]
    if name == NONE:
        return False
    config = get_registry().get(MODEL_SLOTS[slot], name).config
    return config is not None and field in attrs.fields_dict(config)


def reproduce(
    table: str,
    *,
    base: str,
    overrides: dict[str, Any],
    seeds: Sequence[int],
    out_dir: Path,
    rows: Sequence[str] | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train every (row, seed) not yet finished, then write the table; returns its rows.

    ``rows`` picks rows by key (e.g. the audio rows for an audio-only corpus); by default
    every row the paper has.
    """
    from avsent.training.report import REPORT_JSON
    from avsent.training.trainer import train

    console = console or Console()
    rows = select_rows(table, rows)
    base_dict = run_config_dict(base)
    results = []
    for row in rows:
        reports = []
        for seed in seeds:
            run_dir = out_dir / row.key / f"seed-{seed}"
            config = row_config(row, base_dict, overrides, seed)
            check_same_config(run_dir, config)
            done = run_dir / REPORT_JSON
            if done.is_file():
                reports.append(json.loads(done.read_text()))
                continue
            console.rule(f"{table}: {row.label}, seed {seed}")
            result = train(
                config, run_dir=run_dir, resume=run_dir.exists(), console=console, progress=progress
            )
            reports.append(result.report)
        results.append(_summarise(row, reports))
    write_table(out_dir, table, results)
    console.print(table_view(table, results))
    return results


def check_same_config(run_dir: Path, config: RunConfig) -> None:
    """A run folder is reused only for the very config it was trained with."""
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        return
    saved, wanted = upgrade_config_dict(load_toml(saved_path)), to_dict(config)
    if saved != wanted:
        field = _first_difference(saved, wanted)
        raise AvsentError(
            f"{run_dir} was trained with another config (first difference: {field}); "
            "choose another --out, or delete that folder to retrain it"
        )


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return path or "(whole config)"


def select_rows(table: str, keys: Sequence[str] | None) -> tuple[Row, ...]:
    """The rows named by ``keys`` (in table order), or the paper's rows."""
    if not keys:
        return tuple(row for row in TABLES[table] if row.paper is not None)
    known = {row.key for row in TABLES[table]}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise ConfigError("--rows", f"{table} has no row {unknown[0]!r}; rows: {', '.join(known)}")
    return tuple(row for row in TABLES[table] if row.key in keys)


def _summarise(row: Row, reports: list[dict[str, Any]]) -> dict[str, Any]:
    summary = summarize_folds(reports)
    return {
        "model": row.label,
        "modality": row.modality,
        "runs": len(reports),
        "paper": dict(zip(HEADLINE, row.paper, strict=True)) if row.paper else None,
        **{m: {"mean": 100 * summary[m]["mean"], "std": 100 * summary[m]["std"]} for m in HEADLINE},
    }


def _cell(entry: dict[str, float]) -> str:
    return f"{entry['mean']:.2f} ± {entry['std']:.2f}"


def markdown_table(table: str, results: list[dict[str, Any]]) -> str:
    with_modality = table == "table4"
    head = ["Model", *(["Modality"] if with_modality else []), "Accuracy", "Recall", "F1"]
    lines = ["| " + " | ".join(head) + " | paper (Acc / Rec / F1) |"]
    lines.append("|" + "---|" * (len(head) + 1))
    for r in results:
        cells = [r["model"], *([r["modality"]] if with_modality else [])]
        cells += [_cell(r[m]) for m in HEADLINE]
        paper = " / ".join(f"{r['paper'][m]:.2f}" for m in HEADLINE) if r["paper"] else "–"
        lines.append("| " + " | ".join(cells) + f" | {paper} |")
    runs = results[0]["runs"] if results else 0
    lines += ["", f"Mean ± std over {runs} seed(s), percent, on the test split of each run."]
    return "\n".join(lines) + "\n"


def csv_table(results: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["model", "modality", "runs"]
        + [f"{m}_{s}" for m in HEADLINE for s in ("mean", "std")]
        + [f"paper_{m}" for m in HEADLINE]
    )
    for r in results:
        writer.writerow(
            [r["model"], r["modality"], r["runs"]]
            + [f"{r[m][s]:.4f}" for m in HEADLINE for s in ("mean", "std")]
            + [r["paper"][m] if r["paper"] else "" for m in HEADLINE]
        )
    return buffer.getvalue()


def write_table(out_dir: Path, table: str, results: list[dict[str, Any]]) -> None:
    """``TABLE.md``, ``TABLE.csv``, ``TABLE.json`` and a bar chart ``TABLE.png``."""
    atomic_write_text(out_dir / f"{table}.md", markdown_table(table, results))
    atomic_write_text(out_dir / f"{table}.csv", csv_table(results))
    atomic_write_text(out_dir / f"{table}.json", strict_json.dumps(results, indent=2))
    _bar_chart(out_dir / f"{table}.png", table, results)


def _bar_chart(path: Path, table: str, results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(results) + 2, 4))
    width = 0.27
    x = np.arange(len(results))
    for i, (metric, label) in enumerate(zip(HEADLINE, ("Accuracy", "Recall", "F1"), strict=True)):
        means = [r[metric]["mean"] for r in results]
        stds = [r[metric]["std"] for r in results]
        ax.bar(x + (i - 1) * width, means, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(x, [r["model"] for r in results], rotation=15)
    ax.set_ylabel("percent")
    ax.set_ylim(0, 100)
    ax.set_title(table.replace("table", "Table "))
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def table_view(table: str, results: list[dict[str, Any]]) -> Table:
    view = Table("Model", "Modality", "Accuracy", "Recall", "F1", "paper Acc", title=table)
    for r in results:
        view.add_row(
            r["model"],
            r["modality"],
            *(_cell(r[m]) for m in HEADLINE),
            f"{r['paper']['accuracy']:.2f}" if r["paper"] else "–",
        )
    return view
