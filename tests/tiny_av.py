"""Overrides that shrink ``mavsa-di`` to a seconds-fast audio-visual model for tests."""

TINY_AV = {
    "audio.stem_channels": 4,
    "audio.widths": [4, 8],
    "audio.units_per_stage": 1,
    "video.growth_rate": 4,
    "video.block_config": [1, 1],
    "video.num_init_features": 8,
    "faces.landmarks.name": "none",
}
