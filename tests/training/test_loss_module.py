"""The loss the trainer minimises: cross-entropy, mixup's blend, a head's own loss, the
per-branch auxiliary losses and the branch confidences gradient modulation reads."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.functional import cross_entropy

from avsent.training import modulation
from avsent.training.loop import _LossModule


class Head(nn.Module):
    """A head whose ``extra_loss`` is easy to recompute: the fused features' mean times the
    first target plus one."""

    def extra_loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return features.mean() * (targets[0] + 1)


class FixedModel(nn.Module):
    """Returns given logits, fused features and branch outputs whatever the batch."""

    def __init__(self, logits, fused, branches, head: nn.Module | None = None) -> None:
        super().__init__()
        self.head = head or nn.Identity()
        self.out = SimpleNamespace(logits=logits, fused=fused, branches=branches)

    def forward(self, batch) -> SimpleNamespace:
        return self.out


generator = torch.Generator().manual_seed(0)
LOGITS = torch.randn(4, 3, generator=generator)
FUSED = torch.randn(4, 5, generator=generator)
AUDIO = torch.randn(4, 3, generator=generator)
VIDEO = torch.randn(4, 3, generator=generator)
TARGETS = torch.tensor([0, 1, 2, 1])
TARGETS_B = torch.tensor([2, 2, 0, 1])
ALL = torch.ones(4, dtype=torch.bool)
SOME = torch.tensor([True, False, True, True])


def branch_ce(logits: torch.Tensor, targets: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Unweighted cross-entropy over the present clips."""
    return cross_entropy(logits[present], targets[present])


def test_without_branches_or_head_loss_it_is_the_criterion() -> None:
    loss = _LossModule(FixedModel(LOGITS, FUSED, {}), nn.CrossEntropyLoss())(None, TARGETS)
    assert loss.item() == pytest.approx(cross_entropy(LOGITS, TARGETS).item(), rel=1e-6)


def test_mixup_blends_the_two_targets_losses() -> None:
    loss = _LossModule(FixedModel(LOGITS, FUSED, {}), nn.CrossEntropyLoss())(
        None, TARGETS, TARGETS_B, 0.3
    )
    want = 0.3 * cross_entropy(LOGITS, TARGETS) + 0.7 * cross_entropy(LOGITS, TARGETS_B)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_a_heads_extra_loss_is_added_on_the_fused_features() -> None:
    model = FixedModel(LOGITS, FUSED, {}, head=Head())
    loss = _LossModule(model, nn.CrossEntropyLoss())(None, TARGETS_B)
    want = cross_entropy(LOGITS, TARGETS_B) + FUSED.mean() * 3
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_branch_losses_are_off_by_default() -> None:
    model = FixedModel(LOGITS, FUSED, {"audio": (AUDIO, ALL)})
    loss = _LossModule(model, nn.CrossEntropyLoss())(None, TARGETS)
    assert loss.item() == pytest.approx(cross_entropy(LOGITS, TARGETS).item(), rel=1e-6)


def test_each_branch_adds_its_weighted_loss_over_the_clips_that_have_it() -> None:
    model = FixedModel(LOGITS, FUSED, {"audio": (AUDIO, ALL), "video": (VIDEO, SOME)})
    loss = _LossModule(model, nn.CrossEntropyLoss(), aux_loss=0.25)(None, TARGETS)
    want = cross_entropy(LOGITS, TARGETS) + 0.25 * (
        branch_ce(AUDIO, TARGETS, ALL) + branch_ce(VIDEO, TARGETS, SOME)
    )
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_mixup_blends_the_branch_losses_too() -> None:
    model = FixedModel(LOGITS, FUSED, {"video": (VIDEO, SOME)})
    loss = _LossModule(model, nn.CrossEntropyLoss(), aux_loss=0.5)(None, TARGETS, TARGETS_B, 0.2)
    main = 0.2 * cross_entropy(LOGITS, TARGETS) + 0.8 * cross_entropy(LOGITS, TARGETS_B)
    aux = 0.2 * branch_ce(VIDEO, TARGETS, SOME) + 0.8 * branch_ce(VIDEO, TARGETS_B, SOME)
    assert loss.item() == pytest.approx((main + 0.5 * aux).item(), rel=1e-6)


def test_a_lone_clip_of_a_rare_class_is_its_own_branch_loss() -> None:
    """Class weights below 1 make the present clips' weight sum small, not negligible."""
    weight = torch.tensor([0.4, 1.0, 1.6])
    lone = torch.tensor([True, False, False, False])
    loss = _LossModule(FixedModel(LOGITS, FUSED, {}), nn.CrossEntropyLoss(weight=weight))
    branch = loss._branch_loss(AUDIO, TARGETS, lone)
    assert branch.item() == pytest.approx(cross_entropy(AUDIO[:1], TARGETS[:1]).item(), rel=1e-6)


def test_a_branch_no_clip_has_adds_nothing() -> None:
    none = torch.zeros(4, dtype=torch.bool)
    loss = _LossModule(FixedModel(LOGITS, FUSED, {}), nn.CrossEntropyLoss())
    assert loss._branch_loss(AUDIO, TARGETS, none).item() == 0.0


def test_branch_confidences_are_kept_only_when_asked() -> None:
    model = FixedModel(LOGITS, FUSED, {"audio": (AUDIO, ALL), "video": (VIDEO, SOME)})
    plain = _LossModule(model, nn.CrossEntropyLoss())
    plain(None, TARGETS)
    assert plain.confidence == {}
    tracking = _LossModule(model, nn.CrossEntropyLoss(), track_confidence=True)
    tracking(None, TARGETS)
    assert tracking.confidence == {
        "audio": modulation.branch_confidence(AUDIO, TARGETS, ALL),
        "video": modulation.branch_confidence(VIDEO, TARGETS, SOME),
    }
    assert tracking.confidence["audio"] != tracking.confidence["video"]
