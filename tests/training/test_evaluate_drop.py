"""Scoring an audio-visual model without one modality (``avsent evaluate --drop``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample, collate
from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.run_config import default_run_config
from avsent.training.loop import evaluate
from tiny_av import TINY_AV

TINY = {**TINY_AV, "train.batch_size": 4}


class Clips(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.samples = [
            Sample(
                ClipFeatures(
                    audio=rng.normal(size=(140, 40)).astype(np.float32),
                    video=rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8),
                ),
                i % 7,
            )
            for i in range(n)
        ]

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
