"""Model cost on this machine: MAVSA-DI and its CPU preset, against a plain matmul.

Per recipe: forward+backward time per training batch, the FLOPs of that step
(``torch.utils.flop_counter``) and so the achieved GFLOP/s (from the mean and the best
round), the peak memory of one step (resident set sampled every 2 ms during the step, in a
fresh process, minus the resident set just before it), and the inference latency of one
clip. The baseline, in the same run, is a 1024² fp32 matmul: the GFLOP/s this CPU reaches
on the friendliest possible workload.

Precision (``test_train_step_precision``): the ``mavsa-di`` step at batch 8 under bf16
autocast against the same step in fp32 and against fp32 as it ran before the CPU changes
of issue 18 (every I3DD frame-mask multiply, oneDNN for every 1×1×1 conv), each step's
GFLOP/s beside a 1024² matmul of its precision measured in the same test. Per-step CPU
seconds are recorded too: on a shared machine they move less than wall time. The CUDA
run is ``bench_gpu.py``.

    .venv/bin/pytest benchmarks/bench_model.py -p no:cacheprovider --benchmark-only -o addopts=""

Figures land in each benchmark's ``extra_info`` (``--benchmark-json out.json`` keeps them).
Inputs: 3-s clips (130 audio frames of the default front-end), the recipe's frames and
crop size; batch 4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import avsent
from avsent import Batch
from avsent.layers import pointwise
from avsent.plugins import i3dd

RECIPES = ("mavsa-di-small", "mavsa-di")
BATCH = 4
AUDIO_FRAMES = 130  # 3 s at 22050 Hz, hop 512
MATMUL_N = 1024


def make_batch(model: avsent.AVModel, size: int) -> Batch:
    spec = model.inputs
    g = torch.Generator().manual_seed(0)
    lengths = torch.linspace(AUDIO_FRAMES, AUDIO_FRAMES // 2, size).long()
    return Batch(
        audio=torch.randn(size, spec.audio_features, AUDIO_FRAMES, generator=g),
        audio_mask=torch.arange(AUDIO_FRAMES)[None] < lengths[:, None],
        video=torch.rand(
            size, spec.video_channels, spec.video_frames, spec.video_size, spec.video_size,
            generator=g,
        ),
        video_mask=torch.ones(size, spec.video_frames, dtype=torch.bool),
        targets=torch.arange(size) % len(model.class_names),
    )  # fmt: skip


def train_step(model: avsent.AVModel, batch: Batch) -> None:
    model.zero_grad(set_to_none=True)
    out = model(batch)
    torch.nn.functional.cross_entropy(out.logits, batch.targets).backward()


def step_flops(model: avsent.AVModel, batch: Batch) -> int:
    with FlopCounterMode(display=False) as counter:
        train_step(model, batch)
    return counter.get_total_flops()


PEAK_SCRIPT = """
import json, sys, threading, time, torch, avsent
sys.path.insert(0, {bench_dir!r})
from bench_model import make_batch, train_step, rss_mb
model = avsent.create_model({recipe!r}).train()
batch = make_batch(model, {batch})
before = rss_mb()
peak, done = [before], threading.Event()
def sample():
    while not done.is_set():
        peak.append(rss_mb())
        time.sleep(0.002)
sampler = threading.Thread(target=sample)
sampler.start()
train_step(model, batch)
done.set()
sampler.join()
print(json.dumps({{"rss_before_mb": before, "rss_peak_mb": max(peak)}}))
"""


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory_mb(recipe: str, batch: int) -> dict[str, float]:
    """Peak RSS during one training step in a fresh process (sampled every 2 ms), and its
    growth over the RSS just before the step (model built, batch made)."""
    code = PEAK_SCRIPT.format(bench_dir=str(Path(__file__).parent), recipe=recipe, batch=batch)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["step_peak_mb"] = figures["rss_peak_mb"] - figures["rss_before_mb"]
    return figures


def test_matmul_reference(benchmark):
    """The baseline: dense fp32 matmul GFLOP/s on this CPU with these threads."""
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=10, iterations=1, warmup_rounds=2)
    stats = benchmark.stats.stats
    benchmark.extra_info.update(
        threads=torch.get_num_threads(),
        gflops_per_s_mean=2 * MATMUL_N**3 / stats.mean / 1e9,
        gflops_per_s_best=2 * MATMUL_N**3 / stats.min / 1e9,
    )


@pytest.mark.parametrize("recipe", RECIPES)
def test_forward_backward(benchmark, recipe):
    torch.manual_seed(0)
    model = avsent.create_model(recipe).train()
    batch = make_batch(model, BATCH)
    flops = step_flops(model, batch)
    benchmark.pedantic(train_step, args=(model, batch), rounds=3, iterations=1, warmup_rounds=1)
    stats = benchmark.stats.stats
    benchmark.extra_info.update(
        recipe=recipe,
        batch=BATCH,
        threads=torch.get_num_threads(),
        parameters=sum(p.numel() for p in model.parameters()),
        gflop_per_step=flops / 1e9,
        gflops_per_s_mean=flops / stats.mean / 1e9,
        gflops_per_s_best=flops / stats.min / 1e9,
        **peak_memory_mb(recipe, BATCH),
    )


@pytest.mark.parametrize("recipe", RECIPES)
def test_inference_latency_one_clip(benchmark, recipe):
    torch.manual_seed(0)
    model = avsent.create_model(recipe).eval()
    batch = make_batch(model, 1)

    def infer() -> torch.Tensor:
        with torch.inference_mode():
            return model(batch).logits.softmax(-1)

    probs = benchmark.pedantic(infer, rounds=5, iterations=1, warmup_rounds=1)
    assert probs.shape == (1, len(model.class_names))
    benchmark.extra_info.update(recipe=recipe, threads=torch.get_num_threads())


PRECISION_BATCH = 8
PRECISIONS = ("avsent-bf16", "fp32", "fp32-before")


def matmul_gflops(dtype: torch.dtype, n: int = MATMUL_N, rounds: int = 10) -> float:
    """Best-of-``rounds`` GFLOP/s of an n² matmul in ``dtype`` (bf16: AMX where present)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


@pytest.mark.parametrize("way", PRECISIONS)
def test_train_step_precision(benchmark, monkeypatch, way):
    benchmark.group = f"mavsa-di train step, batch {PRECISION_BATCH}, CPU"
    if way != "avsent-bf16":
        benchmark.extra_info["role"] = "baseline"
    if way == "fp32-before":  # the code paths the issue-18 changes replaced
        monkeypatch.setattr(i3dd, "_padding", lambda mask: mask)
        monkeypatch.setattr(pointwise, "MATMUL_MAX_POSITIONS", -1)
    bf16 = way == "avsent-bf16"
    torch.manual_seed(0)
    model = avsent.create_model("mavsa-di").train()
    batch = make_batch(model, PRECISION_BATCH)
    cpu_seconds: list[float] = []

    def step() -> None:
        start = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            train_step(model, batch)
        cpu_seconds.append(time.process_time() - start)

    flops = step_flops(model, batch)
    matmul = matmul_gflops(torch.bfloat16 if bf16 else torch.float32)
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    stats = benchmark.stats.stats
    benchmark.extra_info.update(
        figure=f"GFLOP/s of the step ({way}, best round)",
        value=flops / stats.min / 1e9,
        baseline=matmul,
        baseline_name=f"{MATMUL_N}² {'bf16' if bf16 else 'fp32'} matmul, same test",
        unit="GFLOP/s",
        threads=torch.get_num_threads(),
        gflop_per_step=flops / 1e9,
        cpu_s_per_step_min=min(cpu_seconds[1:]),
    )
