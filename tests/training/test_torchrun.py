"""``torchrun`` with two gloo processes on a tiny config, in the default run.

The slow test in tests/commands/test_train.py launches the whole ``avsent train`` command
under torchrun; this one keeps its point, a real torchrun launch whose ranks find each
other from torchrun's environment and train in lockstep, on a model of a few hundred
weights and one epoch (see torchrun_worker.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from avsent.training.checkpoint import checkpoint_path, read_checkpoint

HERE = Path(__file__).resolve().parent


def test_torchrun_two_gloo_processes_train_in_lockstep(tmp_path: Path) -> None:
    command = [  # --standalone: torchrun picks and holds a free port itself
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(HERE / "torchrun_worker.py"), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("trained on 2 ranks") == 1  # only rank 0 prints

    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world_size"] for i in infos] == [2, 2]
    assert infos[0]["val_f1"] == infos[1]["val_f1"]
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    ckpt = read_checkpoint(checkpoint_path(tmp_path, "last"))  # written by rank 0 only
    assert ckpt.state["epoch"] == 1
    assert ckpt.state["step"] == 2  # 16 clips / 2 ranks = 8 each, batch 8 / 2 = 4 → 2 steps
