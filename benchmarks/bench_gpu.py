"""The GPU run, ready for whoever has a CUDA device (issue 18, item 4).

* ``mavsa-di`` training step on CUDA with bf16 autocast and channels-last-3d video against
  the same step in fp32, and its achieved TFLOP/s against an 8192² bf16 matmul on the same
  GPU in the same run;
* the data-wait share of one real :class:`~avsent.training.loop.Trainer` epoch (bf16,
  DataLoader workers, pinned memory) on in-memory clips of the recipe's shapes;
* a 2-process NCCL ``DistributedDataParallel`` step (one GPU per process, the same batch
  per process) against one process: clips per second, ideal ratio 2.0.

    python benchmarks/run_all.py --only gpu

Without a CUDA device every test skips with one line saying so (run_all reports "not run");
the DDP test also needs two GPUs.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).parent))
import avsent
from avsent.config import merge
from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample
from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.run_config import RunConfig, default_run_config, run_config_dict
from avsent.training.loop import TrainData, Trainer
from bench_model import make_batch, step_flops, train_step

NO_CUDA = "no CUDA device on this machine: the GPU benchmarks did not run"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

RECIPE = "mavsa-di"
BATCH = 16  #: clips per step (per process under DDP)
MATMUL_N = 8192


def cuda_seconds(fn, rounds: int = 10, warmup: int = 3) -> float:
    """Median seconds per call of ``fn`` on the current CUDA stream (events, synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


def bf16_matmul_tflops(n: int = MATMUL_N) -> float:
    """The GPU's dense bf16 rate on the friendliest workload: the baseline."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2 * n**3 / cuda_seconds(lambda: torch.mm(a, b)) / 1e12


def cuda_model_and_batch(channels_last: bool) -> tuple[avsent.AVModel, avsent.Batch]:
    torch.manual_seed(0)
    model = avsent.create_model(RECIPE).cuda().train()
    batch = make_batch(model, BATCH).to("cuda")
    if channels_last:
        model.video_encoder.to(memory_format=torch.channels_last_3d)
        batch.video = batch.video.contiguous(memory_format=torch.channels_last_3d)
    return model, batch


@pytest.mark.parametrize("way", ["avsent-bf16-channels-last", "fp32"])
def test_train_step(benchmark, way):
    """Timings: bf16 + channels-last (avsent) against fp32 (baseline); TFLOP/s vs matmul."""
    bf16 = way != "fp32"
    model, batch = cuda_model_and_batch(channels_last=bf16)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            train_step(model, batch)
        torch.cuda.synchronize()

    flops = step_flops(model, batch)
    matmul = bf16_matmul_tflops()
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=3)
    benchmark.extra_info.update(
        figure=f"{RECIPE} training step, {way}",
        value=flops / benchmark.stats.stats.mean / 1e12,
        baseline=matmul,
        baseline_name=f"{MATMUL_N}² bf16 matmul",
        unit="TFLOP/s",
        recipe=RECIPE,
        batch=BATCH,
        device=torch.cuda.get_device_name(),
        tflop_per_step=flops / 1e12,
        peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20,
    )


class RandomClips(Dataset):
    """In-memory clips of the recipe's shapes (uint8 faces, float audio), labels cycling."""

    def __init__(self, model: avsent.AVModel, n: int) -> None:
        spec = model.inputs
        rng = np.random.default_rng(0)
        self.labels = np.arange(n) % len(model.class_names)
        self.items = [
            Sample(
                ClipFeatures(
                    audio=rng.normal(size=(spec.audio_features, 130)).astype(np.float32),
                    video=rng.integers(
                        0, 256, (spec.video_frames, spec.video_size, spec.video_size, 3), np.uint8
                    ),
                ),
                int(label),
            )
            for label in self.labels
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def trainer_epoch(device: str, run_dir: Path, recipe: str = RECIPE) -> dict:
    """One bf16 Trainer epoch of ``recipe`` on 16 batches of RandomClips → its record."""
    train = {"epochs": 1, "batch_size": BATCH, "warmup_epochs": 0, "device": device}
    train |= {"amp": True, "loader_workers": 4}
    config = default_run_config(
        recipe, base=merge(run_config_dict(recipe), {"train": train}, RunConfig)
    )
    model = build_model(config, inputs_for(config), tuple(EMOTIONS))
    clips = RandomClips(model, 16 * BATCH)
    data = TrainData(clips, None, clips.labels, model.class_names)
    trainer = Trainer(config, model, data, run_dir=run_dir, progress=False)
    return trainer.fit().history[0]


def test_data_wait_share(benchmark, tmp_path):
    """The share of a bf16 training epoch spent waiting for the DataLoader."""
    record = benchmark.pedantic(trainer_epoch, args=("cuda", tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(
        figure="data-wait share of a training epoch",
        value=record["data_wait_share"],
        baseline=None,
        unit="share of the epoch",
        steps=16,
        loader_workers=4,
        epoch_seconds=record["seconds"],
    )


# -- DistributedDataParallel -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, backend: str, port: int, out: str, steps: int) -> None:
    """One rank: the model under DDP, ``steps`` timed optimiser steps; rank 0 writes the
    median step seconds to ``out``. ``backend`` "gloo" runs it on CPUs (a smoke check)."""
    import time

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    cuda = backend == "nccl"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = avsent.create_model(RECIPE).to(device).train()
    batch = make_batch(model, BATCH if cuda else 2).to(device)
    # as the Trainer does: the same parts every step, some parameters never used
    ddp = DistributedDataParallel(model, device_ids=[rank] if cuda else None, static_graph=True)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = ddp(batch).logits
        torch.nn.functional.cross_entropy(logits.float(), batch.targets).backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()

    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps({"step_s": float(np.median(times))}))
    dist.destroy_process_group()


def ddp_step_seconds(world: int, backend: str = "nccl", steps: int = 10) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.json")
        torch.multiprocessing.spawn(
            ddp_worker, args=(world, backend, _free_port(), out, steps), nprocs=world
        )
        return json.loads(Path(out).read_text())["step_s"]


@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="NCCL DDP needs two CUDA devices; fewer here"
)
def test_ddp_two_processes_vs_one(benchmark):
    one = ddp_step_seconds(1)
    two = benchmark.pedantic(ddp_step_seconds, args=(2,), rounds=1, iterations=1)
    benchmark.extra_info.update(
        figure="clips/s, 2 processes × 1 GPU, NCCL DDP",
        value=2 * BATCH / two,
        baseline=BATCH / one,
        baseline_name="1 process, 1 GPU",
        unit="clips/s (ideal ratio 2.0)",
        step_s_two=two,
        step_s_one=one,
        batch_per_process=BATCH,
    )
