"""Scoring an audio-visual model without one modality (``avsent evaluate --drop``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsent.data.loader import Sample, collate
from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.run_config import default_run_config
from avsent.training.loop import evaluate
from tiny_av import TINY_AV, av_samples

TINY = {**TINY_AV, "train.batch_size": 4}


class Clips(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.samples = av_samples(n)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


@pytest.mark.parametrize("drop", ["audio", "video"])
def test_drop_scores_every_clip_without_that_modality(drop):
    torch.manual_seed(0)
    config = default_run_config("mavsa-di", TINY)
    model = build_model(config, inputs_for(config), EMOTIONS).eval()
    clips = Clips(10)
    full = evaluate(model, clips, config=config)
    dropped = evaluate(model, clips, config=config, drop=drop)
    batch = collate(clips.samples)
    with torch.no_grad():
        expected = model(batch.without(drop)).logits.argmax(-1).numpy()
        both = model(batch).logits.argmax(-1).numpy()
    assert np.array_equal(dropped.y_pred, expected)
    assert np.array_equal(full.y_pred, both)
    with torch.no_grad():
        assert not torch.allclose(model(batch.without(drop)).logits, model(batch).logits)
