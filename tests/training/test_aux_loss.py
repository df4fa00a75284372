"""Unimodal auxiliary losses (``train.aux_loss``): each branch's own head, trained beside
the fused one, over the clips that have the branch's modality."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from avsent.data.loader import collate
from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.run_config import default_run_config
from avsent.training.loop import _LossModule
from tiny_av import TINY_AV, av_samples


def batch_of(n: int):
    batch = collate(av_samples(n))
    return batch, batch.targets


def model_with(aux_loss: float):
    torch.manual_seed(0)
    config = default_run_config("mavsa-di", {**TINY_AV, "train.aux_loss": aux_loss})
    return build_model(config, inputs_for(config), EMOTIONS)


def test_branch_heads_exist_only_when_the_aux_loss_is_on() -> None:
    batch, _ = batch_of(4)
    assert model_with(0.0)(batch).branches == {}
    out = model_with(0.5)(batch)
    assert set(out.branches) == {"audio", "video"}
    for logits, present in out.branches.values():
        assert logits.shape == (4, len(EMOTIONS)) and present.all()


def test_the_loss_adds_each_branch_over_the_clips_that_have_it() -> None:
    model = model_with(0.5).eval()  # no dropout: the two forwards below must agree
    batch, targets = batch_of(6)
    no_video = torch.tensor([True, True, False, False, False, False])  # 2 clips lose video
    batch = attrs.evolve(batch, video_mask=batch.video_mask & ~no_video[:, None])
    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        loss = _LossModule(model, criterion, aux_loss=0.5)(batch, targets)
        out = model(batch)
        audio_logits, audio_present = out.branches["audio"]
        video_logits, video_present = out.branches["video"]
        assert audio_present.all() and video_present.tolist() == (~no_video).tolist()
        expected = (
            criterion(out.logits, targets)
            + 0.5 * criterion(audio_logits, targets)
            + 0.5 * criterion(video_logits[~no_video], targets[~no_video])
        )
    assert torch.allclose(loss, expected, atol=1e-6)


def test_class_weights_weigh_the_branch_losses_too() -> None:
    model = model_with(1.0).eval()
    batch, targets = batch_of(7)
    weight = torch.linspace(0.5, 2.0, len(EMOTIONS))
    criterion = nn.CrossEntropyLoss(weight=weight)
    with torch.no_grad():
        loss = _LossModule(model, criterion, aux_loss=1.0)(batch, targets)
        out = model(batch)
        expected = criterion(out.logits, targets) + sum(
            criterion(logits, targets) for logits, _ in out.branches.values()
        )
    assert torch.allclose(loss, expected, atol=1e-6)


def test_the_branch_heads_get_gradients() -> None:
    model = model_with(1.0)
    batch, targets = batch_of(4)
    _LossModule(model, nn.CrossEntropyLoss(), aux_loss=1.0)(batch, targets).backward()
    for head in model.branch_heads.values():
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
