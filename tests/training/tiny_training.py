"""A tiny audio-only model and in-memory feature datasets, so loop tests take seconds.

A module of its own (not conftest) so spawned DDP worker processes can import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from torch.utils.data import Dataset

from avsent.config import from_dict, merge
from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample
from avsent.model import build_model, inputs_for
from avsent.run_config import RunConfig, run_config_dict
from avsent.training.loop import TrainData, Trainer, seed_everything

CLASSES = ("a", "b", "c")
#: an audio-only recipe narrowed to a few hundred parameters
TINY = {
    "audio": {"name": "drsn", "stem_channels": 4, "widths": [4, 8], "units_per_stage": 1},
    "video": {"name": "none"},
    "audio_intra": {"name": "identity"},
    "video_intra": {"name": "identity"},
    "fusion": {"name": "passthrough"},
    "train": {"epochs": 3, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0, "device": "cpu"},
}


def make_tiny_config(**train: Any) -> RunConfig:
    data = merge(run_config_dict("drsn-audio"), TINY, RunConfig)
    data["train"].update(train)
    return from_dict(RunConfig, data)


class FeatureList(Dataset):
    """Random mel-chroma-shaped maps whose class shows as a raised band."""

    def __init__(self, n: int, seed: int, n_features: int = 140) -> None:
        rng = np.random.default_rng(seed)
        self.labels = np.arange(n) % len(CLASSES)
        self.items = []
        for label in self.labels:
            frames = int(rng.integers(12, 24))
            audio = rng.normal(size=(n_features, frames)).astype(np.float32)
            audio[10 + 20 * label : 20 + 20 * label] += 2.0
            self.items.append(Sample(ClipFeatures(audio=audio), int(label)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return self.items[index]


def quiet_trainer(
    config: RunConfig, sets: tuple[FeatureList, FeatureList], run_dir: Path
) -> Trainer:
    """A :class:`Trainer` of the tiny model on (train, val) sets, printing nothing."""
    train_set, val_set = sets
    seed_everything(config.train.seed)
    model = build_model(config, inputs_for(config), CLASSES)
    data = TrainData(train_set, val_set, train_set.labels, CLASSES)
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    return Trainer(config, model, data, run_dir=run_dir, console=quiet, progress=False)
