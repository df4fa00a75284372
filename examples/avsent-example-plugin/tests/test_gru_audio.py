"""The plugin's own tests: with the plugin installed, avsent finds ``gru-audio`` by its entry
point, and :mod:`avsent.testing` checks it against the audio-encoder contract."""

from __future__ import annotations

import pytest

from avsent.testing import check_audio_encoder


@pytest.mark.parametrize(
    "config",
    [None, {"hidden": 8, "layers": 2, "bidirectional": False}],
    ids=["defaults", "two-layer-unidirectional"],
)
def test_gru_audio_keeps_the_audio_encoder_contract(config):
    check_audio_encoder("gru-audio", config)
