"""A training step on a busy machine: alone, and beside one CPU-burning process (issue 18).

Each figure is the median step time of ``mavsa-di-small`` (batch 4) in a fresh process
with one torch thread per core, run alone and then beside a competing process that
spins one core, three times in turn; the ratio busy / alone is the slow-down (the fair
share on 2 cores is about 1.5-2×). ``avsent-passive`` is the environment the ``avsent``
command sets (:mod:`avsent.training.threads`: idle OpenMP threads sleep); ``default`` is
torch's own (idle threads spin). "Alone" means without the competitor: whatever else the
machine runs stays, so the load averages before and after are recorded too.

    .venv/bin/pytest benchmarks/bench_busy.py -p no:cacheprovider --benchmark-only -o addopts=""
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from avsent.training.threads import PASSIVE_WAITS

RECIPE = "mavsa-di-small"
STEPS = 6
REPEATS = 3
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

STEP_SCRIPT = """
import json, sys, time, torch, avsent
sys.path.insert(0, {bench_dir!r})
from bench_model import make_batch, train_step
torch.manual_seed(0)
model = avsent.create_model({recipe!r}).train()
batch = make_batch(model, 4)
train_step(model, batch)
times = []
for _ in range({steps}):
    start = time.perf_counter()
    train_step(model, batch)
    times.append(time.perf_counter() - start)
print(json.dumps({{"step_s": sorted(times)[len(times) // 2], "threads": torch.get_num_threads()}}))
"""
BURN_SCRIPT = "while True: pass"


def step_seconds(env: dict[str, str], busy: bool) -> dict:
    """Median step time in a fresh process with ``env``, beside a spinning one if ``busy``."""
    code = STEP_SCRIPT.format(bench_dir=str(Path(__file__).parent), recipe=RECIPE, steps=STEPS)
    burner = subprocess.Popen([sys.executable, "-c", BURN_SCRIPT]) if busy else None
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment(way: str) -> dict[str, str]:
    drop = {*PASSIVE_WAITS, "OMP_NUM_THREADS", "GOMP_SPINCOUNT"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["OMP_NUM_THREADS"] = str(CORES)  # one per core, as torch picks by default
    if way == "avsent-passive":
        env.update(PASSIVE_WAITS)
    return env


@pytest.mark.parametrize("way", ["avsent-passive", "default"])
def test_step_beside_a_busy_process(benchmark, way):
    env = environment(way)
    load_before = os.getloadavg()
    alone, busy = [], []
    for _ in range(REPEATS):
        alone.append(step_seconds(env, busy=False)["step_s"])
        busy.append(step_seconds(env, busy=True)["step_s"])
    a, b = statistics.median(alone), statistics.median(busy)
    benchmark.pedantic(lambda: None, rounds=1)  # the figures below are the result
    benchmark.extra_info.update(
        figure=f"step seconds beside one busy process ({way}); ratio = slow-down",
        value=b,
        baseline=a,
        baseline_name="the same step alone",
        unit="s",
        recipe=RECIPE,
        threads=CORES,
        alone_s=[round(x, 3) for x in alone],
        busy_s=[round(x, 3) for x in busy],
        load_before=[round(x, 2) for x in load_before],
        load_after=[round(x, 2) for x in os.getloadavg()],
    )
