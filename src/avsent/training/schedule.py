"""Learning-rate schedules as a pure function of the optimisation step.

A schedule that is a function of ``step`` has no state of its own, so resuming a run
only needs the step counter (kept in the checkpoint) to continue on exactly the same
curve.
"""

from __future__ import annotations

import math

import torch

#: one-cycle shape, as in Smith's 1cycle and torch's OneCycleLR defaults
ONECYCLE_RISE = 0.3
ONECYCLE_START_DIV = 25.0
ONECYCLE_END_DIV = 1e4


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base LR at optimisation ``step`` (0-based).

    * ``constant``: 1 after a linear warm-up;
    * ``cosine``: linear warm-up, then half a cosine from 1 down to 0 at the last step;
    * ``onecycle``: half-cosine rise from 1/25 to 1 over the first 30 % of steps, then
      half-cosine fall to 1/10⁴ (``warmup_steps`` is not used: the rise is the warm-up).
    """
    total_steps = max(total_steps, 1)
    if schedule == "onecycle":
        rise = max(int(ONECYCLE_RISE * total_steps), 1)
        if step < rise:
            return _cos_between(1 / ONECYCLE_START_DIV, 1.0, step / rise)
        fall = max(total_steps - rise, 1)
        return _cos_between(1.0, 1 / ONECYCLE_END_DIV, min((step - rise) / fall, 1.0))
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        return _cos_between(1.0, 0.0, min((step - warmup_steps) / span, 1.0))
    raise ValueError(f"unknown schedule {schedule!r}")


def _cos_between(start: float, end: float, progress: float) -> float:
    """Half a cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every group's LR to ``base_lr × factor × its lr_scale`` (1 when it has none);
    returns ``base_lr × factor``."""
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
