"""What each modality of the built-in data allows at best: the ceilings a model is read against.

Two figures per modality (audio only, video only, audio-visual):

* **by construction** (:func:`avsent.data.synthetic.construction_ceilings`): classes drawn
  from the same style cannot be told apart, so the share of distinct styles bounds any
  classifier;
* **oracle**: a classifier given the *generating parameters* of each clip — the realised
  face cues (brows, eyes, mouth, asymmetry, how much the mouth moves) and voice cues
  (pitch level, contour, bounce, tremor, energy, syllable rate, breathiness) stored in
  ``clips.json`` — scored speaker-independently (leave-one-speaker-out over the set's
  speakers). It sees what no model sees (no noise, no blur, no codec), so it is an upper
  estimate of what the media allow, not a bound. The classifier is sklearn's
  ``HistGradientBoostingClassifier`` on the raw cues and a logistic regression on
  per-speaker standardised cues; the better of the two is the oracle.

    python benchmarks/synthetic_ceiling.py                 # the built-in default set
    python benchmarks/synthetic_ceiling.py --preset benchmark
    python benchmarks/synthetic_ceiling.py --set clips_per_class=40 --json out.json

Generates the set first when it is not cached yet (the same folder training uses).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

from avsent.config import from_dict, to_dict
from avsent.data import synthetic

PRESETS = {"default": synthetic.SyntheticConfig, "benchmark": synthetic.SyntheticBenchmarkConfig}
MODALITIES = ("audio", "video", "audio-visual")


def cue_matrix(entries: list[dict[str, Any]], modality: str) -> np.ndarray:
    """Per clip the realised cues a modality shows [N, D]."""
    parts = {"audio": ("voice",), "video": ("face",), "audio-visual": ("face", "voice")}[modality]
    return np.array(
        [[v for part in parts for _, v in sorted(e[part].items())] for e in entries], float
    )


def per_speaker_standardised(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for s in np.unique(speakers):
        rows = speakers == s
        out[rows] = (x[rows] - x[rows].mean(0)) / (x[rows].std(0) + 1e-9)
    return out


def oracle_accuracy(x: np.ndarray, labels: np.ndarray, speakers: np.ndarray) -> dict[str, float]:
    """Leave-one-speaker-out accuracy of each oracle classifier on cues ``x``."""
    folds = LeaveOneGroupOut()
    found = {}
    for name, model, inputs in (
        ("boosting", HistGradientBoostingClassifier(random_state=0), x),
        ("logistic", LogisticRegression(max_iter=2000), per_speaker_standardised(x, speakers)),
    ):
        predicted = cross_val_predict(model, inputs, labels, groups=speakers, cv=folds)
        found[name] = float(np.mean(predicted == labels))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a field of the preset (e.g. clips_per_class=40)")  # fmt: skip
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    fields = to_dict(PRESETS[args.preset]())
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = json.loads(value) if value[:1] in "[{0123456789-." else value
    cfg = from_dict(PRESETS[args.preset], fields)
    start = time.perf_counter()
    entries = synthetic.latents(cfg)
    labels = np.array([e["label"] for e in entries])
    speakers = np.array([e["speaker"] for e in entries])
    bounds = synthetic.construction_ceilings()
    rows = {}
    for modality in MODALITIES:
        oracle = oracle_accuracy(cue_matrix(entries, modality), labels, speakers)
        rows[modality] = {"construction": bounds[modality], **oracle,
                          "oracle": max(oracle.values())}  # fmt: skip
    print(f"{args.preset} set: {len(entries)} clips, {len(set(speakers))} speakers "
          f"({cfg.folder()}), {time.perf_counter() - start:.0f} s")  # fmt: skip
    print("| modality | by construction | oracle (boosting) | oracle (logistic) |")
    print("|---|---|---|---|")
    for modality, row in rows.items():
        print(f"| {modality} | {row['construction']:.1%} | {row['boosting']:.1%} "
              f"| {row['logistic']:.1%} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"preset": args.preset, "clips": len(entries), "rows": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
