"""Per-branch linear probes: a closed-form ridge probe, and the CSV a run writes per epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avsent.contracts import Tokens
from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample
from avsent.labels import EMOTIONS
from avsent.model import AVModel, InputSpec
from avsent.plugins.attention import ConcatFusion
from avsent.training.loop import TrainData
from avsent.training.probes import COLUMNS, PROBES_CSV, BranchProbes, probe_accuracy


def test_the_probe_separates_separable_classes_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 30)
    centres = rng.normal(0, 5, size=(7, 10))
    x = centres[y] + rng.normal(size=(len(y), 10))
    train, test = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    assert min(probe_accuracy(x[train], y[train], x[test], y[test])) >= 0.95
    noise = rng.normal(size=x.shape)
    _, held_out = probe_accuracy(noise[train], y[train], noise[test], y[test])
    assert held_out < 0.35  # chance is 1/7


class AudioCarriesTheLabel(torch.utils.data.Dataset):
    """The class shows in the audio (a per-class pattern over the rows), never in the video."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.samples = []
        for i in range(n):
            label = i % 7
            audio = rng.normal(size=(140, 40)) + 2.0 * (np.arange(140)[:, None] % 7 == label)
            video = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
            self.samples.append(Sample(ClipFeatures(audio.astype(np.float32), video), label))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


class FramesAsTokens(nn.Module):
    """An encoder that hides nothing: each audio frame (or each video frame's mean pixel
    per channel) is a token, so the probe sees exactly what the input holds."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        pooled = x if x.dim() == 3 else x.flatten(3).mean(-1)  # video [B, C, T, H, W]
        return Tokens(pooled.transpose(1, 2), mask)


def transparent_model() -> AVModel:
    inputs = InputSpec(audio_features=140, video_channels=3, video_frames=8, video_size=32)
    return AVModel(
        audio_encoder=FramesAsTokens(140),
        video_encoder=FramesAsTokens(3),
        audio_intra=None,
        video_intra=None,
        fusion=ConcatFusion(audio_dim=140, video_dim=3),
        head=nn.Linear(143, 7),
        class_names=EMOTIONS,
        inputs=inputs,
    )


def test_probes_write_one_row_per_epoch_and_see_which_branch_carries_the_label(
    tmp_path: Path,
) -> None:
    model = transparent_model()
    data = TrainData(
        train=AudioCarriesTheLabel(70, seed=0),
        val=AudioCarriesTheLabel(35, seed=1),
        train_labels=np.arange(70) % 7,
        class_names=EMOTIONS,
    )
    probes = BranchProbes(model, data, tmp_path, batch_size=16)
    for epoch in (1, 2, 2):  # the second 2: a resumed run redoing epoch 2 replaces its row
        probes({"epoch": epoch})
    with open(tmp_path / PROBES_CSV) as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert tuple(rows[0]) == COLUMNS
    last = {k: float(v) for k, v in rows[-1].items()}
    assert last["audio_val_accuracy"] > 0.8
    assert last["video_val_accuracy"] < 0.4  # chance is 1/7: nothing to find in the video
    assert all(0.0 <= last[c] <= 1.0 for c in COLUMNS[1:])
