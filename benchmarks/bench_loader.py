"""Is the data path ever the bottleneck? Loader vs model step, and preprocessing speed.

1. With a warm feature cache, the share of a training epoch spent waiting for batches
   (target < 10 %): an instrumented epoch of ``mavsa-di-small`` on the CPU, next to its two
   halves measured alone — iterating the loader (the avsent way) and the model step on a
   batch already in memory (the baseline the loader must keep up with).
2. Preprocessing throughput on the real clips in ``../shared/data/av``: clips per second
   per core with worker processes (the avsent way) and in-process on one core (baseline).

    .venv/bin/pytest benchmarks/bench_loader.py -p no:cacheprovider --benchmark-only -o addopts=""

Figures are written to ``extra_info`` (``--benchmark-json``) and printed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avsent import create_model
from avsent.data.cache import FeatureCache
from avsent.data.features import ClipFeatures, frontend_fingerprint
from avsent.data.loader import ClipDataset, collate, make_loader
from avsent.data.preprocess import preprocess
from avsent.model import inputs_for
from avsent.run_config import default_run_config

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED_AV = Path(os.environ.get("AVSENT_SHARED_DATA", REPO.parent / "shared" / "data")) / "av"
RECIPE = "mavsa-di-small"
CLIPS = 64  #: an epoch
BATCH = 16  #: TrainConfig's default batch size


@pytest.fixture(scope="module")
def config():
    return default_run_config(RECIPE)


@pytest.fixture(scope="module")
def warm(config, tmp_path_factory) -> ClipDataset:
    """A cache holding an epoch of clips with the shapes the recipe's front-ends produce."""
    spec = inputs_for(config)
    cache = FeatureCache(tmp_path_factory.mktemp("cache"))
    rng = np.random.default_rng(0)
    items = []
    for i in range(CLIPS):
        frames = int(rng.integers(70, 130))  # 1.6-3 s at 22050 Hz / hop 512, like CREMA-D
        features = ClipFeatures(
            audio=rng.standard_normal((spec.audio_features, frames)).astype(np.float32),
            video=rng.integers(
                0,
                256,
                (spec.video_frames, spec.video_size, spec.video_size, spec.video_channels),
                dtype=np.uint8,
            ),
            face_fraction=1.0,
        )
        key = f"{frontend_fingerprint(config)}/{i:064x}"
        cache.put(key, features)
        items.append((key, i % 7))
    return ClipDataset(items, cache, train=True, max_audio_frames=None)


@pytest.fixture(scope="module")
def trainer(config):
    """A training step of the recipe's model: forward, loss, backward, Adam."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_model(RECIPE).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(batch).logits, batch.targets)
        loss.backward()
        optimizer.step()

    return step


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_epoch(benchmark, warm: ClipDataset, workers: int) -> None:
    """The avsent way: one epoch of batches from the warm cache, no model."""
    loader = make_loader(warm, batch_size=BATCH, shuffle=True, workers=workers)
    next(iter(loader))  # start persistent workers outside the timing
    batches = benchmark(lambda: sum(1 for _ in loader))
    assert batches == CLIPS // BATCH


def test_model_step_epoch(benchmark, warm: ClipDataset, trainer) -> None:
    """The baseline: the same number of model steps on a batch already in memory."""
    batch = collate([warm[i] for i in range(BATCH)])
    benchmark.pedantic(
        lambda: [trainer(batch) for _ in range(CLIPS // BATCH)], rounds=3, warmup_rounds=1
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_epoch_wait_share(benchmark, warm: ClipDataset, trainer, workers: int) -> None:
    """A real epoch, timing how long each step waits for its batch."""
    loader = make_loader(warm, batch_size=BATCH, shuffle=True, workers=workers)
    waits: list[float] = []
    totals: list[float] = []

    def epoch() -> None:
        start = last = time.perf_counter()
        waited = 0.0
        for batch in loader:
            got = time.perf_counter()
            waited += got - last
            trainer(batch)
            last = time.perf_counter()
        waits.append(waited)
        totals.append(last - start)

    benchmark.pedantic(epoch, rounds=3, warmup_rounds=1)
    share = sum(waits[1:]) / sum(totals[1:])  # first entry is the warm-up round
    benchmark.extra_info["wait_share"] = share
    print(f"\nworkers={workers}: {100 * share:.1f} % of the epoch spent waiting for data")


def _real_clips() -> list[Path]:
    clips = sorted(p for p in SHARED_AV.rglob("*") if p.suffix in (".flv", ".mp4"))
    if not clips:
        pytest.skip(f"no real clips in {SHARED_AV}")
    return clips


@pytest.mark.parametrize("workers", [0, 2])
def test_preprocess_throughput(benchmark, config, tmp_path_factory, workers: int) -> None:
    """Cold cache every round; ``workers=0`` is the in-process single-core baseline."""
    clips = _real_clips()
    results = []

    def run() -> None:
        cache = FeatureCache(tmp_path_factory.mktemp("cold"))
        results.append(preprocess(clips, config, workers=workers, progress=False, cache=cache))

    benchmark.pedantic(run, rounds=2, iterations=1)
    result = results[-1]
    cores = max(workers, 1)
    # usable clips (failures are quick) per second of worker time, start-up excluded; and
    # per second of wall time per core, start-up included
    per_core = result.computed / result.busy_seconds
    wall_per_core = result.computed / result.seconds / cores
    benchmark.extra_info.update(
        clips=len(clips),
        failed=len(result.failed),
        cores=cores,
        clips_per_s_per_core=per_core,
        wall_clips_per_s_per_core=wall_per_core,
    )
    print(
        f"\nworkers={workers}: {result.computed} of {len(clips)} clips usable, "
        f"{result.seconds:.1f} s wall; {per_core:.2f} clips/s per core of worker time, "
        f"{wall_per_core:.2f} clips/s per core end to end (with worker start-up)"
    )
