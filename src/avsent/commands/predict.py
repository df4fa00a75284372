"""``avsent predict``: the label and class probabilities of each file, by a trained run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import rich_click as click
from rich.markup import escape
from rich.table import Table

from avsent.cli import console, err_console

TOP = 3  #: classes shown per file in the table (--json has them all)


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, in a list.")
def predict(run: Path, files: tuple[Path, ...], as_json: bool) -> None:
    """Classify FILES with RUN's model (a run folder or a checkpoint file).

    A file that cannot be read prints its error and the others still run; the exit
    status is 1 when any file failed.
    """
    from avsent.pipeline import Pipeline

    pipeline = Pipeline.from_run(run)
    results = pipeline.predict_many(files)
    if as_json:
        rows = [
            {
                "path": str(r.path),
                "label": r.label,
                "probabilities": r.probabilities,
                "error": r.error,
            }
            for r in results
        ]
        click.echo(json.dumps(rows, indent=2))
    else:
        table = Table()
        table.add_column("file", overflow="fold")
        table.add_column("label")
        table.add_column(f"top {TOP} (%)")
        for r in results:
            if r.probabilities is None:
                continue
            ranked = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[:TOP]
            top = "  ".join(f"{name} {100 * p:.1f}" for name, p in ranked)
            table.add_row(escape(str(r.path)), f"[bold]{escape(r.label)}[/bold]", top)
        if table.row_count:
            console.print(table)
    failed = [r for r in results if r.error is not None]
    for r in failed:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(r.error))}", highlight=False)
    if failed:
        sys.exit(1)
