"""avsent's side of the EmoDB benchmark: the audio-only DRSN recipe, leave-one-speaker-out.

It trains with ``avsent.training.trainer.train_folds`` on the ``emodb`` dataset with
``data.split.method = "loso"``: fold k tests speaker k in sorted order, the very folds of
:func:`emodb_peer.loso_folds_emodb` (checked against each fold's saved split). The test
speaker is never trained on; its features are standardised with its own statistics (no
labels), as the peer's are. Pooled figures come
from the summed confusion matrices of the folds, so they equal scoring all predictions
together, as the peer does.

    .venv/bin/python benchmarks/emodb_avsent.py --seeds 0,1,2     # prints the figures
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output" / "emodb-avsent"
RECIPE = "drsn-audio"

#: The training options for this small corpus: general ones every recipe can use.
#: No validation speaker: all 7 training speakers train, for a fixed cosine schedule, and
#: the last epoch is scored (early stopping on one held-out speaker's ~45 clips picked
#: noisy epochs and cost a seventh of the data). Features are standardised per speaker
#: (as the peer does), so the dB gain augmentation is off; frequency is flattened into the
#: tokens rather than averaged.
SETTINGS: dict[str, Any] = {
    "data.split.method": "loso",
    "data.split.val_fraction": 0.0,
    "data.speaker_norm": True,
    "audio.freq_pooling": "flatten",
    "train.epochs": 60,
    "train.batch_size": 16,
    "train.lr": 1e-3,
    "train.augment.time_masks": 2,
    "train.augment.time_mask_width": 10,
    "train.augment.freq_masks": 2,
    "train.augment.freq_mask_width": 12,
    "train.augment.time_stretch": 0.1,
}


def confusion_scores(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy, macro recall and macro F1 of a confusion matrix (rows = truth)."""
    tp = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(1), matrix.sum(0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    return {
        "accuracy": float(tp.sum() / matrix.sum()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
    }


def config_digest(config: Any) -> str:
    """A short hash of everything in the run config but the seed and the cache folder.

    Runs live in a folder named after it, so finished folds are reused only by the very
    same settings — never by a run whose options (or avsent's defaults) have changed."""
    from avsent.config import to_dict

    data = to_dict(config)
    data["train"].pop("seed")
    data["data"].pop("cache_dir")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def run_seed(emodb_dir: Path, seed: int, out_dir: Path, overrides: dict[str, Any]) -> list[dict]:
    """One seed's fold reports (finished folds of the same settings are kept: re-running
    resumes)."""
    from avsent.run_config import default_run_config
    from avsent.training.trainer import train_folds

    config = default_run_config(
        RECIPE,
        {
            "data.dataset.name": "emodb",
            "data.dataset.root": str(Path(emodb_dir).resolve()),
            "data.cache_dir": str(out_dir / "cache"),
            "train.seed": seed,
            **SETTINGS,
            **overrides,
        },
    )
    run_dir = out_dir / config_digest(config) / f"seed-{seed}"
    result = train_folds(config, run_dir=run_dir, resume=True, progress=False)
    return result.reports


def _test_speaker(report: dict) -> str:
    split = json.loads((Path(report["run"]) / "split.json").read_text())
    speakers = {c["speaker"] for c in split["clips"] if c["part"] == "test"}
    if len(speakers) != 1:
        raise RuntimeError(f"{report['run']}: expected one test speaker, found {sorted(speakers)}")
    return speakers.pop()


def avsent_results(
    emodb_dir: Path,
    folds: Sequence[Any],
    seeds: Sequence[int],
    *,
    out_dir: Path = OUTPUT,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """The figures in :func:`emodb_peer.summarise_seeds`' shape, on the peer's ``folds``."""
    start = time.perf_counter()
    metrics = ("accuracy", "macro_recall", "macro_f1")
    per_seed, per_fold_runs, train_minutes = [], [], []
    for seed in seeds:
        reports = run_seed(Path(emodb_dir), seed, out_dir, overrides or {})
        epochs = [epoch for r in reports for epoch in r["history"]]
        train_minutes.append(sum(epoch["seconds"] for epoch in epochs) / 60)
        by_speaker = {_test_speaker(r): r for r in reports}
        if sorted(by_speaker) != sorted(f.speaker for f in folds):
            raise RuntimeError(f"avsent folds {sorted(by_speaker)} differ from the peer's")
        pooled = sum(np.array(r["confusion"]) for r in reports)
        per_seed.append(confusion_scores(pooled))
        per_fold_runs.append({s: {m: r[m] for m in metrics} for s, r in by_speaker.items()})
    per_fold = {
        f.speaker: {
            m: float(np.mean([run[f.speaker][m] for run in per_fold_runs])) for m in metrics
        }
        for f in folds
    }
    result: dict[str, Any] = {
        "name": f"avsent {RECIPE} (DRSN → IMA, mel+chroma, speaker-normalised)",
        "short": f"avsent {RECIPE}",
        "pooled": {m: float(np.mean([p[m] for p in per_seed])) for m in metrics},
        "pooled_std": {m: float(np.std([p[m] for p in per_seed])) for m in metrics},
        "per_seed": per_seed,
        "per_fold": per_fold,
        "settings": {**SETTINGS, **(overrides or {})},
        "train_minutes_per_seed": train_minutes,  #: summed epoch times, even of reused runs
        "seconds": time.perf_counter() - start,
    }
    for m in metrics:
        values = np.array([v[m] for v in per_fold.values()])
        result[f"fold_mean_{m}"] = float(values.mean())
        result[f"fold_std_{m}"] = float(values.std())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    import emodb_peer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emodb", type=Path, default=emodb_peer.DEFAULT_EMODB)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    from avsent.config import parse_override

    folds = emodb_peer.loso_folds_emodb(emodb_peer.emodb_files(args.emodb))
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = dict(parse_override(s) for s in args.set)
    result = avsent_results(args.emodb, folds, seeds, out_dir=args.out, overrides=overrides)
    print(json.dumps({k: result[k] for k in ("pooled", "pooled_std", "per_seed")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
