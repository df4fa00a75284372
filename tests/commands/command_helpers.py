"""Driving the CLI in tests, and the options of a tiny synthetic run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
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


def split_records(run_dir: Path) -> list[dict[str, Any]]:
    """``run_dir/split.json``'s clip records, each ``path`` made absolute (the file names
    clips relative to its ``root``)."""
    data = json.loads((run_dir / "split.json").read_text())
    return [{**r, "path": str(Path(data["root"]) / r["path"])} for r in data["clips"]]


def tones(root: Path) -> Path:
    """Two classes of half-second tones: a folder dataset that needs no generation."""
    for label, pitch in (("low", 200.0), ("high", 900.0)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            t = np.arange(8000, dtype=np.float32) / 16000
            sf.write(
                root / label / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (pitch + 10 * i) * t), 16000
            )
    return root


def squash(text: str) -> str:
    """``text`` without whitespace: rich wraps long lines at the terminal's width."""
    return "".join(text.split())
