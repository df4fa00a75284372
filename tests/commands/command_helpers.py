"""Driving the CLI in tests, and the options of a tiny synthetic run."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from avsent.cli import cli


def tiny_args(root: Path) -> list[str]:
    """``--set`` options: 21 one-second synthetic clips and a model of a few thousand weights."""
    sets = [
        "data.dataset.clips_per_class=3",
        f"data.dataset.root={root / 'synthetic'}",
        "data.dataset.seconds=1.0",
        "data.dataset.size=96",
        "data.workers=0",
        f"data.cache_dir={root / 'cache'}",
        "faces.num_frames=4",
        "audio.widths=[8,16]",
        "audio.stem_channels=8",
        "video.growth_rate=4",
        "video.block_config=[1,1]",
        "video.num_init_features=8",
        "audio_intra.d_model=16",
        "video_intra.d_model=16",
        "fusion.d_model=16",
        "train.batch_size=4",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def run_cli(*args: str | Path, expect: int = 0) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exit_code != expect:
        raise AssertionError(f"exit {result.exit_code}:\n{result.output}") from result.exception
    return result
