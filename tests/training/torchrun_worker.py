"""One rank of a tiny DDP training job, started by ``torchrun`` (see test_torchrun.py).

The rank learns its place from torchrun's environment (RANK, WORLD_SIZE, MASTER_PORT and
the agent's store) through :func:`avsent.training.distributed.setup`, as ``avsent train``
does under torchrun.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from rich.console import Console
from safetensors.torch import save_file
from tiny_training import CLASSES, FeatureList, make_tiny_config

from avsent.model import build_model, inputs_for
from avsent.training import distributed
from avsent.training.loop import TrainData, Trainer, seed_everything


def main(out: Path) -> None:
    torch.set_num_threads(1)
    ctx = distributed.setup("cpu")
    try:
        config = make_tiny_config(epochs=1, batch_size=8)
        seed_everything(config.train.seed + ctx.rank)  # different starts: DDP must sync them
        model = build_model(config, inputs_for(config), CLASSES)
        train_set, val_set = FeatureList(16, seed=0), FeatureList(5, seed=1)
        data = TrainData(train_set, val_set, train_set.labels, CLASSES)
        quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
        trainer = Trainer(config, model, data, run_dir=out, ctx=ctx, console=quiet, progress=False)
        result = trainer.fit()
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / f"rank{ctx.rank}.safetensors"))
        info = {"world_size": ctx.world_size, "val_f1": result.history[-1]["val_macro_f1"]}
        (out / f"rank{ctx.rank}.json").write_text(json.dumps(info))
        if ctx.is_main:
            print("trained on", ctx.world_size, "ranks", flush=True)
    finally:
        distributed.shutdown(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
