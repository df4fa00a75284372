"""``avsent predict``: the label and class probabilities of each file, by a trained run."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import attrs
import rich_click as click
from rich.markup import escape
from rich.table import Table

from avsent import strict_json
from avsent.cli import console, err_console
from avsent.commands.options import MANIFEST_SUFFIXES, check_run

TOP = 3  #: classes shown per file in the table (--json and --out have them all)
OUT_SUFFIXES = (".csv", ".jsonl")


@attrs.frozen
class Target:
    """One file to classify: from the command line, a folder scan or a manifest row."""

    path: Path
    true_label: str | None = None  #: the label a manifest gives it
    error: str | None = None  #: why it cannot even be tried (a bad manifest row)


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    metavar="best|last|FILE",
    help="RUN's best or last checkpoint, or a checkpoint file (which then replaces RUN).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
    help="Files per forward pass.",
)  # fmt: skip
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one row per file to a `.csv` or `.jsonl` file (every class's probability).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, in a list.")
def predict(
    run: Path,
    paths: tuple[Path, ...],
    checkpoint: str,
    batch_size: int,
    out: Path | None,
    as_json: bool,
) -> None:
    """Classify PATHS with RUN's model (a run folder or a checkpoint file).

    A path may be a media file, a folder (searched recursively for media files) or a
    `.csv`/`.jsonl` manifest as `--data` takes (its `label` column is kept as
    `true_label`). A file that cannot be read gets its error and the others still run;
    the exit status is 1 when any file failed.
    """
    from avsent.pipeline import Pipeline

    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise click.BadParameter(f"{out}: expected a .csv or .jsonl file", param_hint="--out")
    if checkpoint in ("best", "last"):
        check_run(run)
        pipeline = Pipeline.from_run(run, checkpoint)
    else:
        pipeline = Pipeline.from_run(Path(checkpoint))
    targets = gather_targets(paths)
    usable = [t for t in targets if t.error is None]
    found = iter(pipeline.predict_many([t.path for t in usable], batch_size=batch_size))
    rows = [result_row(t, next(found) if t.error is None else None) for t in targets]
    if out is not None:
        write_rows(out, rows, pipeline.model.class_names)
        failed = sum(r["error"] is not None for r in rows)
        console.print(
            f"{len(rows)} files: {len(rows) - failed} classified, {failed} failed → "
            f"{escape(str(out))}",
            highlight=False,
            soft_wrap=True,
        )
    elif as_json:
        click.echo(strict_json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    failed_rows = [r for r in rows if r["error"] is not None]
    for r in failed_rows:
        err_console.print(f"[bold red]error:[/bold red] {escape(r['error'])}", highlight=False)
    if failed_rows:
        sys.exit(1)


def gather_targets(paths: tuple[Path, ...]) -> list[Target]:
    """Command-line paths → the files to classify, folders and manifests expanded in order."""
    from avsent.data.manifest import DatasetProblems, read_manifest

    targets: list[Target] = []
    for path in paths:
        if path.is_dir():
            found = _media_files(path)
            if not found:
                targets.append(Target(path, error=f"{path}: no media files in this folder"))
            targets += [Target(p) for p in found]
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            try:
                clips, _, problems = read_manifest(path)
            except DatasetProblems as exc:
                targets.append(Target(path, error=str(exc)))
                continue
            targets += [Target(c.path, true_label=c.label) for c in clips]
            targets += [Target(path, error=problem) for problem in problems]
        else:
            targets.append(Target(path))
    return targets


def _media_files(folder: Path) -> list[Path]:
    """Media files under ``folder``, by the extensions the ``folder`` dataset reads."""
    from avsent.registry import get_registry

    extensions = {e.lower() for e in get_registry().get("dataset", "folder").config().extensions}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def result_row(target: Target, prediction: Any) -> dict[str, Any]:
    """One output record (the JSON form; CSV flattens ``probabilities``); ``modalities``
    says what the prediction came from (``audio`` for a file without a usable video)."""
    if prediction is None:
        return {"path": str(target.path), "label": None, "true_label": target.true_label,
                "modalities": None, "probabilities": None, "error": target.error}  # fmt: skip
    return {
        "path": str(prediction.path),
        "label": prediction.label,
        "true_label": target.true_label,
        "modalities": prediction.modalities,
        "probabilities": prediction.probabilities,
        "error": prediction.error,
    }


def write_rows(out: Path, rows: list[dict[str, Any]], class_names: tuple[str, ...]) -> None:
    """``rows`` as CSV (one ``p_<class>`` column per class) or JSONL, by ``out``'s suffix."""
    from avsent.config import atomic_write_text

    if out.suffix.lower() == ".jsonl":
        atomic_write_text(out, "".join(strict_json.dumps(r) + "\n" for r in rows))
        return
    columns = ["path", "label", "true_label", "modalities", *(f"p_{c}" for c in class_names),
               "error"]  # fmt: skip
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        probs = r["probabilities"] or {}
        flat = {k: v for k, v in r.items() if k != "probabilities"}
        writer.writerow({**flat, **{f"p_{c}": probs.get(c) for c in class_names}})
    atomic_write_text(out, buf.getvalue())


def _print_table(rows: list[dict[str, Any]]) -> None:
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("label")
    table.add_column("from")
    table.add_column(f"top {TOP} (%)")
    for r in rows:
        if r["probabilities"] is None:
            continue
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:TOP]
        top = "  ".join(f"{escape(name)} {100 * p:.1f}" for name, p in ranked)
        label = f"[bold]{escape(r['label'])}[/bold]"
        table.add_row(escape(r["path"]), label, r["modalities"], top)
    if table.row_count:
        console.print(table)
