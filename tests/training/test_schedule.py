"""Learning-rate schedules: shapes at their key points."""

from __future__ import annotations

import itertools

import pytest
import torch

from avsent.training.schedule import lr_factor, set_lr


def test_warmup_is_linear_then_cosine_reaches_zero() -> None:
    total, warm = 100, 10
    factors = [lr_factor("cosine", s, total, warm) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 11)
    assert factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] < 0.001
    assert lr_factor("cosine", 55, total, warm) == pytest.approx(0.5)  # half way down


def test_constant_after_warmup() -> None:
    assert [lr_factor("constant", s, 10, 0) for s in range(10)] == [1.0] * 10
    assert lr_factor("constant", 0, 10, 1) == 0.5


def test_onecycle_rises_then_falls() -> None:
    total = 100
    factors = [lr_factor("onecycle", s, total, 0) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 25)
    assert max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 30
    assert factors[-1] < 0.01


def test_unknown_schedule_and_set_lr() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("linear", 0, 10, 0)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert set_lr(opt, 0.01, 0.5) == 0.005
    assert opt.param_groups[0]["lr"] == 0.005
