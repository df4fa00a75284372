"""The autocast dtype of a run, from ``train.amp`` / ``train.amp_dtype`` and the device.

``train.amp = "auto"`` (paper silent) turns bf16 autocast on only where the hardware has
bf16 arithmetic units: x86 CPUs with AMX or AVX512-BF16, CUDA GPUs with native bf16.
Elsewhere bf16 is emulated and slower than fp32, so ``auto`` trains in fp32 there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from avsent.errors import ConfigError

#: /proc/cpuinfo flags of x86 bf16 units (AMX tiles with bf16, or AVX512-BF16)
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (not emulated through fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return _cpu_has_bf16_units()
    return False


def _cpu_has_bf16_units() -> bool:
    cpu = torch.cpu
    probes = [
        getattr(cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    if all(callable(p) for p in probes):  # torch's own CPUID check (every OS)
        return any(p() for p in probes)
    try:  # older torch: the kernel's flags (Linux)
        return cpuinfo_has_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """Whether the ``flags`` lines of a /proc/cpuinfo text name a bf16 unit."""
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split()}
    return bool(flags & BF16_CPU_FLAGS)


def amp_dtype(train: Any, device: torch.device) -> torch.dtype | None:
    """The dtype forward passes autocast to on ``device``; None = fp32 throughout.
    ``train`` is the run's TrainConfig."""
    wanted = torch.float16 if train.amp_dtype == "float16" else torch.bfloat16
    if train.amp == "auto":
        fast = device.type == "cuda" if wanted is torch.float16 else fast_bf16(device)
        return wanted if fast else None
    if not train.amp:
        return None
    if wanted is torch.float16 and device.type != "cuda":
        raise ConfigError("train.amp_dtype", "float16 needs a CUDA device; use bfloat16")
    return wanted
