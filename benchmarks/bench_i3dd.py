"""I3DD training step on the CPU: both presets, achieved GFLOP/s against a large matmul.

For each preset: forward + backward of one batch of 64×64 RGB clips (16 frames), timed;
its FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode``, so GFLOP/s =
FLOPs / time. The baseline in the same run is a 2048² fp32 matmul, the rate this CPU
reaches on the friendliest workload. Figures land in ``extra_info`` and are printed.

    .venv/bin/pytest benchmarks/bench_i3dd.py -p no:cacheprovider --benchmark-only -o addopts="" -s
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from avsent.model import count_parameters
from avsent.plugins.i3dd import PRESETS, DenseNet3D, I3DDConfig

FRAMES, SIZE = 16, 64
BATCH = {"small": 4, "densenet121-3d": 2}
MATMUL_N = 2048
RATES: dict[str, float] = {}


def step(model: DenseNet3D, x: torch.Tensor, mask: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x, mask).mean().square().sum().backward()


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("preset", ["small", "densenet121-3d"])
def test_i3dd_forward_backward(benchmark, preset):
    torch.manual_seed(0)
    model = DenseNet3D(
        I3DDConfig(**PRESETS[preset]), frames=FRAMES, size=SIZE, downsampling="spd"
    ).train()
    x = torch.randn(BATCH[preset], 3, FRAMES, SIZE, SIZE)
    mask = torch.ones(BATCH[preset], FRAMES, dtype=torch.bool)
    flops = count_flops(lambda: step(model, x, mask))
    step(model, x, mask)  # warm-up
    benchmark.pedantic(step, args=(model, x, mask), rounds=3, iterations=1)
    seconds = benchmark.stats.stats.min
    RATES[preset] = flops / seconds / 1e9
    benchmark.extra_info.update(
        params=count_parameters(model),
        batch=BATCH[preset],
        gflop_per_step=flops / 1e9,
        gflops_per_s=RATES[preset],
        threads=torch.get_num_threads(),
    )
    print(
        f"\nI3DD {preset}: {count_parameters(model) / 1e6:.2f} M params, batch {BATCH[preset]}, "
        f"{flops / 1e9:.1f} GFLOP per step, {seconds:.2f} s → {RATES[preset]:.1f} GFLOP/s "
        f"({torch.get_num_threads()} threads)"
    )


def test_matmul_baseline(benchmark):
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    torch.mm(a, b)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=5, iterations=1)
    rate = 2 * MATMUL_N**3 / benchmark.stats.stats.min / 1e9
    benchmark.extra_info["gflops_per_s"] = rate
    shares = ", ".join(f"{k} {v / rate:.0%}" for k, v in RATES.items())
    print(f"\nmatmul {MATMUL_N}²: {rate:.1f} GFLOP/s; I3DD reaches {shares} of it")
