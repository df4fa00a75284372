"""train.amp: true/false/"auto" → the autocast dtype, and the bf16-unit detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_training import quiet_trainer

from avsent.config import from_dict
from avsent.errors import ConfigError
from avsent.run_config import TrainConfig
from avsent.training import precision
from avsent.training.precision import amp_dtype, cpuinfo_has_bf16

CPU = torch.device("cpu")


def test_on_and_off() -> None:
    assert amp_dtype(TrainConfig(amp=False), CPU) is None
    assert amp_dtype(TrainConfig(amp=True), CPU) is torch.bfloat16
    with pytest.raises(ConfigError, match="float16 needs a CUDA device"):
        amp_dtype(TrainConfig(amp=True, amp_dtype="float16"), CPU)


@pytest.mark.parametrize("fast", [True, False])
def test_auto_follows_the_hardware(monkeypatch, fast: bool) -> None:
    monkeypatch.setattr(precision, "fast_bf16", lambda device: fast)
    assert amp_dtype(TrainConfig(amp="auto"), CPU) is (torch.bfloat16 if fast else None)
    # float16 on a CPU is never fast: auto falls back to fp32 instead of failing
    assert amp_dtype(TrainConfig(amp="auto", amp_dtype="float16"), CPU) is None


def test_cpuinfo_flags() -> None:
    line = "flags\t\t: fpu sse2 avx2 avx512f"
    assert not cpuinfo_has_bf16(f"processor\t: 0\n{line}\n")
    assert cpuinfo_has_bf16(f"processor\t: 0\n{line} amx_bf16 amx_tile\n")
    assert cpuinfo_has_bf16(f"{line} avx512_bf16\n")
    assert not cpuinfo_has_bf16("model name\t: avx512_bf16 lookalike\n")  # flags lines only


def test_torch_probe_agrees_with_the_kernel_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo")
    assert precision.fast_bf16(CPU) == cpuinfo_has_bf16(cpuinfo.read_text())


def test_auto_is_a_config_value() -> None:
    assert from_dict(TrainConfig, {"amp": "auto"}).amp == "auto"
    with pytest.raises(ConfigError, match="amp"):
        from_dict(TrainConfig, {"amp": "sometimes"})


@pytest.mark.parametrize("fast", [True, False])
def test_auto_trains_under_the_chosen_precision(
    monkeypatch, tmp_path: Path, feature_sets, tiny_config, fast: bool
) -> None:
    monkeypatch.setattr(precision, "fast_bf16", lambda device: fast)
    seen: list[torch.dtype] = []
    trainer = quiet_trainer(tiny_config(epochs=1, amp="auto"), feature_sets, tmp_path)

    def record(module, args, out) -> None:
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else torch.float32)

    trainer.model.head.register_forward_hook(record)
    result = trainer.fit()
    assert np.isfinite(result.history[0]["train_loss"])
    assert seen and set(seen) == {torch.bfloat16 if fast else torch.float32}
    assert not trainer.scaler.is_enabled()
