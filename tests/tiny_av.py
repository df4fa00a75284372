"""Overrides that shrink ``mavsa-di`` to a seconds-fast audio-visual model for tests, and
random audio-visual samples of the shapes it takes."""

from __future__ import annotations

import numpy as np

from avsent.data.features import ClipFeatures
from avsent.data.loader import Sample

TINY_AV = {
    "audio.stem_channels": 4,
    "audio.widths": [4, 8],
    "audio.units_per_stage": 1,
    "video.growth_rate": 4,
    "video.block_config": [1, 1],
    "video.num_init_features": 8,
    "faces.landmarks.name": "none",
}


def av_samples(n: int) -> list[Sample]:
    """``n`` clips of random mel+chroma audio and face crops, labelled 0..6 in turn."""
    rng = np.random.default_rng(0)
    return [
        Sample(
            ClipFeatures(
                audio=rng.normal(size=(140, 40)).astype(np.float32),
                video=rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8),
            ),
            i % 7,
        )
        for i in range(n)
    ]
