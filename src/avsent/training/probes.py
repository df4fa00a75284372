"""Linear probes per branch during training: does each modality learn, or does one lead?

Multimodal networks tend to lean on the modality that learns fastest and leave the other
under-trained (Wang et al., CVPR 2020; Peng et al., CVPR 2022). The fused accuracy hides
it; a probe shows it. After every epoch, :class:`BranchProbes` pools each branch's tokens
(the masked mean of the audio tokens and of the video tokens after intra-modal
attention: what the fusion receives) and the fusion's output, fits a closed-form ridge
classifier per branch on the training clips and scores it on the validation clips
(closed form: no iterations to tune, the same answer every time, no extra dependency).
Rows go to ``RUN/probes.csv``, one per epoch (``train.probes = true``; off by default:
it costs a forward pass over the training and validation sets per epoch).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import Dataset

from avsent.config import atomic_write_text
from avsent.data.loader import make_loader
from avsent.model import AVModel
from avsent.training.loop import TrainData

PROBES_CSV = "probes.csv"
BRANCHES = ("audio", "video", "fused")
#: L2 penalty of the probe as a share of the number of training clips (each standardised
#: feature's own sum of squares), so it means the same on 100 clips as on 1,000
RIDGE = 0.1
COLUMNS = ("epoch", *(f"{b}_{part}_accuracy" for b in BRANCHES for part in ("train", "val")))


@torch.no_grad()
def pooled_features(
    model: AVModel, dataset: Dataset, *, batch_size: int, workers: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per branch the pooled features [N, D] of every clip (a branch the model lacks is
    left out), and the class indices [N]."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {b: [] for b in BRANCHES}
    labels = []
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, workers=workers,
                         device=device)  # fmt: skip
    for batch in loader:
        batch = batch.to(device)
        audio, video = model.branch_tokens(batch)  # encoded once, for probes and fusion
        if audio is not None and batch.audio is not None:
            parts["audio"].append(audio.mean().float().cpu().numpy())
        if video is not None and batch.video is not None:
            parts["video"].append(video.mean().float().cpu().numpy())
        parts["fused"].append(model.fusion(audio, video).float().cpu().numpy())
        labels.append(batch.targets.cpu().numpy())
    model.train(was_training)
    features = {b: np.concatenate(rows) for b, rows in parts.items() if rows}
    return features, np.concatenate(labels) if labels else np.zeros(0, np.int64)


def probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> tuple[float, float]:
    """(train, test) accuracy of a ridge classifier fitted on train: features standardised
    with the training statistics, one-hot targets, class = the largest output."""
    classes = np.unique(train_y)
    if len(classes) < 2:  # nothing to separate
        return float("nan"), float("nan")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6

    def design(x: np.ndarray) -> np.ndarray:
        z = (x - mean) / std
        return np.concatenate([z, np.ones((len(z), 1))], axis=1)

    a = design(train_x)
    targets = (train_y[:, None] == classes[None, :]).astype(np.float64)
    penalty = RIDGE * len(a) * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ targets)

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        if not len(y):
            return float("nan")
        return float(np.mean(classes[(design(x) @ weights).argmax(1)] == y))

    return accuracy(train_x, train_y), accuracy(test_x, test_y)


class BranchProbes:
    """An :data:`~avsent.training.loop.EpochCallback` writing ``run_dir/probes.csv``."""

    def __init__(
        self,
        model: AVModel,
        data: TrainData,
        run_dir: str | Path,
        *,
        batch_size: int,
        workers: int = 0,
        console: Console | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.path = Path(run_dir) / PROBES_CSV
        self.batch_size = batch_size
        self.workers = workers
        self.console = console

    def _features(self, dataset: Dataset | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if dataset is None or not len(dataset):
            return {}, np.zeros(0, np.int64)
        return pooled_features(self.model, dataset, batch_size=self.batch_size,
                               workers=self.workers)  # fmt: skip

    def __call__(self, record: dict[str, Any]) -> None:
        train_x, train_y = self._features(self.data.train)
        val_x, val_y = self._features(self.data.val)
        row: dict[str, Any] = {"epoch": record["epoch"]}
        for branch, x in train_x.items():
            empty = np.zeros((0, x.shape[1]))
            train_acc, val_acc = probe_accuracy(x, train_y, val_x.get(branch, empty), val_y)
            row[f"{branch}_train_accuracy"] = train_acc
            row[f"{branch}_val_accuracy"] = val_acc
        self._write(row)
        if self.console is not None:
            shown = ", ".join(
                f"{b} {row[f'{b}_val_accuracy']:.3f}"
                for b in BRANCHES
                if f"{b}_val_accuracy" in row
            )
            self.console.print(f"  probes (validation accuracy): {shown}", highlight=False)

    def _write(self, row: dict[str, Any]) -> None:
        """Rows of earlier epochs kept, any of this epoch or later (a resumed run) replaced."""
        rows = []
        if self.path.is_file():
            rows = [r for r in csv.DictReader(io.StringIO(self.path.read_text()))
                    if int(r["epoch"]) < row["epoch"]]  # fmt: skip
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows([*rows, row])
        atomic_write_text(self.path, buf.getvalue())
