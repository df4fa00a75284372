"""avsent's side of the speech benchmarks: the small-corpus audio recipe on EmoDB or RAVDESS.

It runs what a user runs, ``avsent train drsn-audio-small-corpus --data emodb:DIR --set
data.split.method=loso --folds all --seeds …`` (``avsent.training.trainer.train_seeds``):
fold k tests speaker k in sorted order, the very folds of
:func:`emodb_peer.loso_folds_emodb` (checked against the test speakers each fold
reports). On RAVDESS (``--corpus ravdess``) it is ``--data ravdess:DIR --set
data.split.method=speaker-kfold --set data.split.folds=4``, the 4 groups of 4 actors of
:func:`emodb_peer.ravdess_corpus`, with the recipe unchanged from EmoDB. The test speaker is never trained on; its features are standardised with its
own statistics (no labels), as the peer's are. Every figure is the run's own summary:
pooled over folds (the summed confusion matrix, as the peer scores all predictions
together), then mean ± sample std over seeds.

    .venv/bin/python benchmarks/emodb_avsent.py --seeds 0,1,2     # prints the figures
    .venv/bin/python benchmarks/emodb_avsent.py --corpus ravdess --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output" / "emodb-avsent"
#: the small-corpus settings are the recipe's (src/avsent/plugins/recipes.py), not constants
#: here; they were chosen on EmoDB's own speakers (docs/training.md)
RECIPE = "drsn-audio-small-corpus"
#: the protocol of each corpus, not a setting: EmoDB one fold per speaker, RAVDESS 4 folds
PROTOCOLS: dict[str, dict[str, Any]] = {
    "emodb": {"data.split.method": "loso"},
    "ravdess": {"data.split.method": "speaker-kfold", "data.split.folds": 4},
}
METRICS = ("accuracy", "macro_recall", "macro_f1")


def run_seeds(
    root: Path,
    seeds: Sequence[int],
    out_dir: Path,
    overrides: dict[str, Any],
    corpus: str = "emodb",
):
    """The recipe's run of ``corpus``'s protocol for each seed (finished folds of the same
    settings are kept: re-running resumes) → :class:`avsent.training.trainer.SeedsResult`."""
    from avsent.run_config import config_digest, default_run_config
    from avsent.training.trainer import train_seeds

    config = default_run_config(
        RECIPE,
        {
            "data.dataset.name": corpus,
            "data.dataset.root": str(Path(root).resolve()),
            "data.cache_dir": str(out_dir / "cache"),
            **PROTOCOLS[corpus],
            **overrides,
        },
    )
    run_dir = out_dir / config_digest(config, ignore=("train.seed", "data.cache_dir"))
    return train_seeds(config, run_dir=run_dir, seeds=list(seeds), resume=True, progress=False)


def avsent_results(
    root: Path,
    folds: Sequence[Any],
    seeds: Sequence[int],
    *,
    out_dir: Path = OUTPUT,
    overrides: dict[str, Any] | None = None,
    corpus: str = "emodb",
) -> dict:
    """The figures in :func:`emodb_peer.summarise_seeds`' shape, on the peer's ``folds``
    (a RAVDESS fold's ``speaker`` names its actors joined by ``+``)."""
    start = time.perf_counter()
    result = run_seeds(Path(root), seeds, out_dir, overrides or {}, corpus)
    peer_speakers = [sorted(f.speaker.split("+")) for f in folds]
    for run in result.runs:
        tested = [sorted(row["test_speakers"]) for row in run.summary["per_fold"]]
        if tested != peer_speakers:
            raise RuntimeError(
                f"{run.run_dir}: avsent folds tested {tested}, the peer's {peer_speakers}"
            )
    summary = result.summary
    train_minutes = [
        sum(epoch["seconds"] for r in run.reports for epoch in r["history"]) / 60
        for run in result.runs
    ]
    return {
        "name": f"avsent {RECIPE} (DRSN → IMA, mel+chroma, speaker-normalised)",
        "short": f"avsent {RECIPE}",
        "pooled": {m: summary[m]["mean"] for m in METRICS},
        "pooled_std": {m: summary[m]["std"] for m in METRICS},
        "per_seed": [{m: row[m] for m in METRICS} for row in summary["per_seed"]],
        "per_fold": {
            spk: {m: row[m] for m in METRICS} for spk, row in summary["per_speaker"].items()
        },
        "settings": {"recipe": RECIPE, **PROTOCOLS[corpus], **(overrides or {})},
        "train_minutes_per_seed": train_minutes,  #: summed epoch times, even of reused runs
        "seconds": time.perf_counter() - start,
        **{f"fold_mean_{m}": summary["fold_mean"][m] for m in METRICS},
        **{f"fold_std_{m}": summary["fold_std"][m] for m in METRICS},
    }


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    import emodb_peer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=tuple(PROTOCOLS), default="emodb")
    parser.add_argument("--root", type=Path, help="the corpus folder (default: ../shared/…)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, help="runs and cache (default: output/CORPUS-avsent)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    from avsent.config import parse_override

    if args.corpus == "ravdess":
        root = args.root or emodb_peer.DEFAULT_RAVDESS
        folds = emodb_peer.ravdess_corpus(root).folds
    else:
        root = args.root or emodb_peer.DEFAULT_EMODB
        folds = emodb_peer.loso_folds_emodb(emodb_peer.emodb_files(root))
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = dict(parse_override(s) for s in args.set)
    out_dir = args.out or HERE / "output" / f"{args.corpus}-avsent"
    result = avsent_results(
        root, folds, seeds, out_dir=out_dir, overrides=overrides, corpus=args.corpus
    )
    print(json.dumps({k: result[k] for k in ("pooled", "pooled_std", "per_seed")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
