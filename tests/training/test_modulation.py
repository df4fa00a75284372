"""Gradient modulation (OGM-GE, ``train.grad_modulation``): the leading branch is slowed,
the other is not, and every branch's gradients get noise of their own spread."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avsent.config import ConfigError
from avsent.data.loader import collate
from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.run_config import default_run_config
from avsent.training import modulation
from avsent.training.loop import _LossModule
from tiny_av import TINY_AV, av_samples


def test_only_the_more_confident_branch_is_slowed() -> None:
    assert modulation.coefficients({"audio": 3.0, "video": 3.0}, alpha=0.5) == {
        "audio": 1.0,
        "video": 1.0,
    }
    audio_leads = modulation.coefficients({"audio": 4.0, "video": 2.0}, alpha=0.5)
    assert audio_leads == pytest.approx({"audio": 1 - math.tanh(0.5), "video": 1.0})
    video_leads = modulation.coefficients({"audio": 1.0, "video": 4.0}, alpha=0.1)
    assert video_leads == pytest.approx({"audio": 1.0, "video": 1 - math.tanh(0.3)})
    # a batch in which one branch had no clip, or a model with one branch: nothing to compare
    assert modulation.coefficients({"audio": 0.0, "video": 2.0}, alpha=1.0) == {
        "audio": 1.0,
        "video": 1.0,
    }
    assert modulation.coefficients({"audio": 2.0}, alpha=1.0) == {"audio": 1.0}


def test_confidence_sums_the_true_class_probability_over_present_clips() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]))
    targets = torch.tensor([0, 0, 1])
    present = torch.tensor([True, True, False])
    assert modulation.branch_confidence(logits, targets, present) == pytest.approx(0.9)


def test_gradients_are_scaled_per_branch_with_noise_of_their_own_std() -> None:
    torch.manual_seed(0)
    config = default_run_config("mavsa-di", {**TINY_AV, "train.aux_loss": 1.0})
    model = build_model(config, inputs_for(config), EMOTIONS)
    batch = collate(av_samples(6))
    _LossModule(model, nn.CrossEntropyLoss(), aux_loss=1.0)(batch, batch.targets).backward()
    before = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    factors = {"audio": 0.25, "video": 1.0}

    modulation.modulate_gradients(model, factors, torch.Generator().manual_seed(3))

    replay = torch.Generator().manual_seed(3)  # the same draws, in the same order
    owned = set()
    for branch, factor in factors.items():
        for param in modulation.branch_parameters(model, branch):
            name = next(n for n, p in model.named_parameters() if p is param)
            owned.add(name)
            g = before[name]
            std = float(g.std()) if g.numel() > 1 else 0.0
            expected = g * factor + std * torch.randn(g.shape, generator=replay)
            assert torch.allclose(param.grad, expected, atol=1e-6), name
    assert any(n.startswith("audio_encoder") for n in owned)
    assert any(n.startswith("video_encoder") for n in owned)
    for name, param in model.named_parameters():  # fusion, heads: shared, left alone
        if name in before and name not in owned:
            assert torch.equal(param.grad, before[name]), name
    assert any(n.startswith("fusion") for n in before if n not in owned)


def test_noise_is_the_same_on_every_rank_and_differs_by_epoch() -> None:
    a, b = modulation.noise_generator(0, 3), modulation.noise_generator(0, 3)
    assert torch.equal(torch.randn(5, generator=a), torch.randn(5, generator=b))
    c = modulation.noise_generator(0, 4)
    assert not torch.equal(torch.randn(5, generator=c), torch.randn(5, generator=b))


def test_modulation_without_auxiliary_heads_is_refused() -> None:
    with pytest.raises(ConfigError, match="aux_loss"):
        default_run_config("mavsa-di", {"train.grad_modulation": 0.5})
