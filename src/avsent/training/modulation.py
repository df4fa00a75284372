"""On-the-fly gradient modulation with generalisation enhancement (OGM-GE; Peng et al.,
CVPR 2022): slow the branch that leads, so the other is not left under-trained.

Each step, every branch's confidence is the summed softmax probability its own head
(:meth:`avsent.model.AVModel.add_branch_heads`) gives the true class, over the clips that
have the modality. When one branch is more confident than the other by a ratio ρ > 1, its
gradients are scaled by ``1 − tanh(α (ρ − 1))`` (1 at parity; published code differs on
whether ρ or ρ − 1 goes in, we take the form without a jump); the other keeps its own. Then each
branch parameter's gradient gets Gaussian noise of that gradient's own standard deviation
(the "GE" part, which the paper adds so that the smaller steps do not also mean less
exploration). Peng et al. read the confidences off a concatenation head's two halves;
avsent's fusions do not split that way, so the auxiliary heads stand in for them (our
choice), which is why this needs ``train.aux_loss`` > 0. The paper's option of modulating
only within an epoch range is not offered.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from avsent.model import AVModel

#: the AVModel parts each branch owns alone (the fusion and head are shared)
BRANCH_MODULES = {
    "audio": ("audio_encoder", "audio_intra"),
    "video": ("video_encoder", "video_intra", "geometry_proj"),
}


def branch_confidence(logits: torch.Tensor, targets: torch.Tensor, present: torch.Tensor) -> float:
    """Summed probability of the true class over the clips that have the modality."""
    probabilities = logits.detach().float().softmax(-1)
    true_class = probabilities.gather(1, targets[:, None]).squeeze(1)
    return float((true_class * present.float()).sum())


def coefficients(confidence: dict[str, float], alpha: float) -> dict[str, float]:
    """Per branch the factor its gradients are scaled by: below 1 only for the leader."""
    if set(confidence) != {"audio", "video"}:
        return dict.fromkeys(confidence, 1.0)
    audio, video = confidence["audio"], confidence["video"]
    if audio <= 0.0 or video <= 0.0:  # a branch with no clip in this batch: nothing to compare
        return {"audio": 1.0, "video": 1.0}
    ratio = audio / video
    if ratio > 1.0:
        return {"audio": 1.0 - math.tanh(alpha * (ratio - 1.0)), "video": 1.0}
    return {"audio": 1.0, "video": 1.0 - math.tanh(alpha * (1.0 / ratio - 1.0))}


def branch_parameters(model: AVModel, branch: str) -> list[nn.Parameter]:
    """The parameters that only ``branch`` uses (its encoder and intra-modal attention)."""
    params = []
    for name in BRANCH_MODULES[branch]:
        module = getattr(model, name, None)
        if module is not None:
            params.extend(p for p in module.parameters() if p.grad is not None)
    return params


@torch.no_grad()
def modulate_gradients(
    model: AVModel, factors: dict[str, float], generator: torch.Generator
) -> None:
    """Scale each branch's gradients by its factor and add the GE noise, in place."""
    for branch, factor in factors.items():
        for param in branch_parameters(model, branch):
            grad = param.grad
            std = float(grad.float().std()) if grad.numel() > 1 else 0.0
            noise = torch.randn(grad.shape, generator=generator, device=generator.device)
            grad.mul_(factor).add_(noise.to(grad.device, grad.dtype), alpha=std)


def noise_generator(seed: int, epoch: int) -> torch.Generator:
    """The GE noise's generator for one epoch: the same on every rank, so data-parallel
    replicas, whose gradients are already identical, stay identical."""
    state = np.random.SeedSequence([seed, epoch], spawn_key=(1,)).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))
