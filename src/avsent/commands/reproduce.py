"""``avsent reproduce table4|table5``: the paper's tables on any dataset, resumable."""

from __future__ import annotations

from pathlib import Path

import rich_click as click

from avsent.cli import console, overrides_option, parse_overrides
from avsent.commands.options import build_config, data_option, data_overrides


@click.command()
@click.argument("table", type=click.Choice(["table4", "table5"]))
@data_option
@overrides_option
@click.option(
    "--base",
    default="mavsa-di",
    show_default=True,
    help="Recipe whose front-ends, data and training settings every row shares "
    "(e.g. `mavsa-di-small` on a CPU); Table 5 ablates this model.",
)
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the runs and the table (default `runs/reproduce-TABLE`). Re-running "
    "with the same folder keeps finished runs.",
)
@click.option(
    "--rows",
    metavar="KEY,KEY",
    help="Only these rows (table4: rnn, densenet3d, vcan, cmavf-ad, mavsa-di, and drsn-audio, "
    "which is not in the paper; table5: wo-drsn, wo-i3dd, wo-ima, wo-cma, mavsa-di).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def reproduce(
    table: str,
    data: str | None,
    overrides: tuple[str, ...],
    base: str,
    seeds: str,
    out: Path | None,
    rows: str | None,
    no_progress: bool,
) -> None:
    """Train every model of the paper's TABLE under one protocol; write it as Markdown + CSV.

    `table4`: RNN, 3D-DenseNet, VCAN, CMAVF-AD and MAVSA-DI. `table5`: MAVSA-DI without
    DRSN, I3DD, IMA or CMA. Mean ± std over `--seeds`. The split is the run's own
    (`data.split.method`, default `auto`: speaker-independent when every clip has a speaker).
    """
    from avsent.reproduce import reproduce as run_table

    changes = parse_overrides(overrides)
    base_config = build_config(base, None, data, overrides)
    changes.update(data_overrides(data))
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    out_dir = out or Path(base_config.runs_dir) / f"reproduce-{table}"
    run_table(
        table,
        base=base,
        overrides=changes,
        seeds=seed_list,
        out_dir=out_dir,
        rows=[r for r in (rows or "").split(",") if r],
        console=console,
        progress=not no_progress and console.is_terminal,
    )
    console.print(f"tables written to {out_dir}", markup=False, highlight=False)
