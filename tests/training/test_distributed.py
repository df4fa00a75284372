"""Distributed helpers alone, and DDP training with 2 CPU processes on gloo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from rich.console import Console
from safetensors.torch import load_file, save_file
from tiny_training import CLASSES

from avsent.config import ConfigError
from avsent.model import build_model, inputs_for
from avsent.training import distributed
from avsent.training.checkpoint import checkpoint_path, read_checkpoint
from avsent.training.distributed import DistContext
from avsent.training.loop import TrainData, Trainer, seed_everything


def test_single_process_helpers_pass_data_through() -> None:
    ctx = DistContext()
    assert ctx.is_main and not ctx.enabled
    assert distributed.broadcast_json({"a": [1]}, ctx) == {"a": [1]}
    rows = np.arange(6).reshape(3, 2)
    assert distributed.gather_rows(rows, ctx) is rows
    assert distributed.all_sum([1.0, 2.0], ctx) == [1.0, 2.0]
    assert distributed.shard(5, DistContext(rank=1, world_size=2)) == [1, 3]


def test_device_resolution() -> None:
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA"):
            distributed.resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        distributed.resolve_device("gpu-please")


def _rendezvous_store() -> torch.distributed.TCPStore:
    """The store the ranks meet at, hosted by this (parent) process as torchrun's agent
    hosts it: the port stays bound from the moment it is chosen, so no other program can
    take it before the ranks start (a free port found and released earlier could be)."""
    return torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _rank_main(rank: int, port: int, out: str, config_dict: dict) -> None:
    from tiny_training import FeatureList

    from avsent.config import from_dict
    from avsent.run_config import RunConfig

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",  # clients of the parent's
    )  # fmt: skip
    torch.set_num_threads(1)
    ctx = distributed.setup("cpu")
    try:
        got = distributed.broadcast_json({"from": rank}, ctx)
        rows = distributed.gather_rows(np.full((rank + 1, 2), rank), ctx)  # 1 and 2 rows
        total = distributed.all_sum([float(rank + 1)], ctx)
        config = from_dict(RunConfig, config_dict)
        seed_everything(config.train.seed + rank)  # different starts: DDP must sync them
        model = build_model(config, inputs_for(config), CLASSES)
        train_set, val_set = FeatureList(20, seed=0), FeatureList(7, seed=1)
        data = TrainData(train_set, val_set, train_set.labels, CLASSES)
        quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
        trainer = Trainer(config, model, data, run_dir=out, ctx=ctx, console=quiet, progress=False)
        result = trainer.fit()
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, f"{out}/rank{rank}.safetensors")
        info = {
            "broadcast": got["from"],
            "rows": rows[:, 0].tolist(),
            "sum": total[0],
            "val_f1": [r["val_macro_f1"] for r in result.history],
        }
        Path(f"{out}/rank{rank}.json").write_text(__import__("json").dumps(info))
    finally:
        distributed.shutdown(ctx)


def test_ddp_two_gloo_processes_train_in_lockstep(tmp_path: Path, tiny_config) -> None:
    import json

    from avsent.config import to_dict

    # with gradient modulation on: its noise and confidences must not split the replicas
    config = tiny_config(epochs=2, batch_size=8, aux_loss=0.5, grad_modulation=0.5)
    store = _rendezvous_store()
    mp.spawn(_rank_main, args=(store.port, str(tmp_path), to_dict(config)), nprocs=2)

    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for info in infos:
        assert info["broadcast"] == 0
        assert info["rows"] == [0, 1, 1]
        assert info["sum"] == 3.0
    assert infos[0]["val_f1"] == infos[1]["val_f1"]  # same gathered metrics on both ranks
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    ckpt = read_checkpoint(checkpoint_path(tmp_path, "last"))  # written by rank 0 only
    assert ckpt.state["epoch"] == 2
    assert ckpt.state["step"] == 2 * 3  # 20 clips / 2 ranks = 10 each, batch 8/2=4 → 3 steps
