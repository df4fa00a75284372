"""Per-epoch scalars for TensorBoard: ``train.tensorboard = true`` → ``RUN/tensorboard/``.

:class:`TensorBoardLog` is an :data:`~avsent.training.loop.EpochCallback` like any other,
so a W&B or MLflow logger plugs in the same way (``train(callbacks=[...])``) and, like
this one, may have a ``close()`` that the loop calls when training ends. ``tensorboard``
is an optional dependency: asking for it without the package is a ConfigError before any
clip is preprocessed (:func:`check_tensorboard`), not a crash after the first epoch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from avsent.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
_PREFIXES = ("train_", "val_")  #: record keys that say which part they measure


def check_tensorboard(config: Any) -> None:
    """Raise ConfigError when ``train.tensorboard`` is on but the package is missing."""
    if config.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "train.tensorboard",
            "needs the tensorboard package: pip install tensorboard (or leave it false)",
        )


def scalar_tags(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record's numbers by tag (``train_loss`` → ``train/loss``, ``val_macro_f1``
    → ``val/macro_f1``, ``lr`` → ``lr``), so TensorBoard groups them by part."""
    tags = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        tags[f"{prefix[:-1]}/{key[len(prefix) :]}" if prefix else key] = float(value)
    return tags


class TensorBoardLog:
    """Writes each epoch's :func:`scalar_tags` at step = epoch into ``run_dir/tensorboard``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / TENSORBOARD_DIR
        self._writer = None  # opened on the first epoch: a run that fails before leaves none

    def __call__(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        for tag, value in scalar_tags(record).items():
            self._writer.add_scalar(tag, value, record["epoch"])
        self._writer.flush()  # visible in a running TensorBoard while training goes on

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
