"""Multi-process training under ``torchrun``: the same ``avsent train`` command, N processes.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; when WORLD_SIZE > 1 the process group
starts on NCCL (CUDA) or gloo (CPU). Rank 0 alone writes files and draws progress bars;
evaluation is sharded and the predictions gathered, so every rank sees the same metrics
and takes the same early-stopping decision.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist

from avsent.errors import ConfigError


@attrs.frozen
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("train.device", f"not a torch device: {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", "CUDA was asked for but is not available")
    return device


def setup(device_name: str = "auto") -> DistContext:
    """This process's place in the job; starts the process group under ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, device)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_json(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` (JSON data) on every rank."""
    if not ctx.enabled:
        return obj
    payload = json.dumps(obj).encode() if ctx.is_main else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=ctx.device)
    dist.broadcast(size, 0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=ctx.device)
    if ctx.is_main:
        buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(bytes(buf.cpu().numpy()).decode())


def all_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of ``values`` over ranks (e.g. loss totals and counts)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (e.g. BatchNorm running statistics) on every rank.

    DDP syncs buffers at the start of each forward, so after the last step every rank holds
    its own; evaluating and saving with rank 0's keeps all ranks on the model that is saved.
    """
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, 0)


def shard(n: int, ctx: DistContext) -> list[int]:
    """This rank's share of ``range(n)`` for evaluation: no padding, no duplicates."""
    return list(range(ctx.rank, n, ctx.world_size))


def gather_rows(rows: np.ndarray, ctx: DistContext) -> np.ndarray:
    """Concatenate each rank's int64 rows [n_r, C] on every rank (ranks may differ in n_r)."""
    if not ctx.enabled:
        return rows
    t = torch.as_tensor(rows, dtype=torch.int64, device=ctx.device)
    count = torch.tensor([t.shape[0]], dtype=torch.int64, device=ctx.device)
    counts = [torch.zeros_like(count) for _ in range(ctx.world_size)]
    dist.all_gather(counts, count)
    longest = max(int(c.item()) for c in counts)
    padded = torch.zeros((longest, rows.shape[1]), dtype=torch.int64, device=ctx.device)
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts, strict=True)]).cpu().numpy()
