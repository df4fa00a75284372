"""Predict the emotion in media files with the Python API.

    python examples/pipeline.py [FILE ...] [--run RUNS/DIR] [--recipe mavsa-di-small]

With ``--run`` the pipeline loads a trained run (``avsent train`` writes one). Without it,
the recipe's model is built with random weights: the probabilities then only show that
the whole path — decoding, audio features, face crops, model — works, not what the clip
expresses. Without files, it uses a CREMA-D clip from ``../shared/data`` when present,
else a generated talking-face clip.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import avsent
from avsent.pipeline import Pipeline
from avsent.run_config import default_run_config

SHARED_CLIP = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "av"
    / "crema-d"
    / "1001_DFA_HAP_XX.flv"
)


def synthetic_clip(folder: Path, label: str = "happy") -> Path:
    """A generated 2-s talking-face MP4 of ``label`` (the built-in dataset's generator)."""
    from avsent.data.synthetic import SyntheticConfig, generate_clip, make_speakers

    rng = np.random.default_rng(0)
    path = folder / f"synthetic_{label}.mp4"
    generate_clip(SyntheticConfig(), label, make_speakers(1, rng)[0], rng, path)
    return path


def build_pipeline(run: str | None, recipe: str) -> Pipeline:
    if run:
        return Pipeline.from_run(run)
    print(f"note: {recipe} is untrained here (random weights); pass --run for a trained model")
    return Pipeline(avsent.create_model(recipe), default_run_config(recipe))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="audio or video files")
    parser.add_argument("--run", help="a training run folder (default: untrained recipe)")
    parser.add_argument("--recipe", default="mavsa-di-small", help="model when no --run")
    args = parser.parse_args(argv)

    pipeline = build_pipeline(args.run, args.recipe)
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files or [SHARED_CLIP if SHARED_CLIP.exists() else synthetic_clip(Path(tmp))]
        failures = 0
        for result in pipeline.predict_many(files):
            if result.error is not None:
                failures += 1
                print(f"{result.path}: cannot predict: {result.error}")
                continue
            print(f"{result.path}: {result.label}")
            ranked = sorted(result.probabilities.items(), key=lambda kv: -kv[1])
            for name, prob in ranked:
                print(f"  {name:<10} {prob:6.3f}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
