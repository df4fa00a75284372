"""``avsent preprocess``: fill the feature cache ahead of training (or on many machines)."""

from __future__ import annotations

from pathlib import Path

import rich_click as click

from avsent.cli import console, overrides_option
from avsent.commands.options import build_config, config_option, data_option
from avsent.commands.preflight import check_modalities


@click.command()
@click.argument("recipe", required=False)
@data_option
@config_option
@overrides_option
@click.option(
    "--shard",
    metavar="I/N",
    help="Only share I of N (0-based) of the clips, so N machines can split a corpus.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Worker processes (default `data.workers`; 0 = in this process).",
)
def preprocess(
    recipe: str | None,
    data: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    shard: str | None,
    workers: int | None,
) -> None:
    """Extract RECIPE's features (default `mavsa-di`) for every clip into the cache.

    Clips already cached are skipped; clips that cannot be used are listed at the end.
    """
    from avsent.data.cache import cache_dir
    from avsent.data.preprocess import preprocess as run_preprocess
    from avsent.training.data import load_clips

    config = build_config(recipe, config_path, data, overrides)
    clips, _ = load_clips(config)
    check_modalities(config, clips)
    result = run_preprocess(
        clips,
        config,
        workers=config.data.workers if workers is None else workers,
        shard=_parse_shard(shard),
    )
    console.print(
        f"cache {cache_dir(config.data.cache_dir)}: {len(result.features)} clips ready, "
        f"{len(result.failed)} failed",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, _, count = text.partition("/")
    try:
        parsed = int(index), int(count)
    except ValueError:
        parsed = (-1, 0)
    if not (parsed[1] >= 1 and 0 <= parsed[0] < parsed[1]):
        raise click.BadParameter("expected I/N with 0 <= I < N, e.g. 0/4", param_hint="--shard")
    return parsed
