"""``avsent evaluate``: a trained run's metrics on its own test split or on other data."""

from __future__ import annotations

from pathlib import Path

import rich_click as click

from avsent import strict_json
from avsent.cli import console, overrides_option, parse_overrides
from avsent.commands.options import check_run, data_option, data_overrides

SPLITS = ("test", "val", "train", "all")


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@data_option
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    help="Which clips: the run's saved split part (default `test`), or `all` (default with --data).",
)
@click.option(
    "--checkpoint",
    "which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
)
@overrides_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: `RUN/evaluations/DATASET-SPLIT`).",
)
@click.option(
    "--drop",
    type=click.Choice(["audio", "video"]),
    help="Score an audio-visual model with this modality removed from every clip.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bars (e.g. in log files).")
def evaluate(
    run: Path,
    data: str | None,
    split: str | None,
    which: str,
    overrides: tuple[str, ...],
    out: Path | None,
    drop: str | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Metrics of RUN's model (accuracy, macro recall/F1, per class, confusion matrix).

    With `--data` the model is evaluated on another dataset; its labels must be among the
    classes the model was trained on. `--set data.*` overrides change how data is read
    (e.g. `data.cache_dir`); the model and its front-ends stay as trained.
    """
    from avsent.run_config import with_overrides
    from avsent.training.evaluation import evaluate_run
    from avsent.training.report import results_table, write_report

    check_run(run)
    changes = {**data_overrides(data), **parse_overrides(overrides)}
    part = split or ("all" if data else "test")
    report = evaluate_run(
        run,
        which=which,
        part=part,
        reconfigure=lambda c: with_overrides(c, changes),
        progress=not no_progress and console.is_terminal,
        drop=drop,
    )
    run_dir = run if run.is_dir() else run.parent.parent  # RUN/checkpoints/best.safetensors
    suffix = f"-without-{drop}" if drop else ""
    out = out or run_dir / "evaluations" / f"{report['dataset']}-{part}{suffix}"
    write_report(out, report)
    if as_json:
        click.echo(strict_json.dumps(report, indent=2))
        return
    console.print(
        results_table(
            report,
            title=f"{report['recipe']} on {report['dataset']} ({part}"
            + (f", without {drop})" if drop else ")"),
        )
    )
    console.print(f"report: {out}", markup=False, highlight=False, soft_wrap=True)
