"""The plugin's own tests: with the plugin installed, avsent finds ``gru-audio`` by its entry
point, and :mod:`avsent.testing` checks it against the audio-encoder contract."""

from __future__ import annotations

import pytest

from avsent.testing import ContractError, check_audio_encoder

#: why the check fails today, and the fix (one line in GRUAudio.forward)
ALL_PADDING_CLIP = (
    "a clip with no real step is packed with length 1, so its padded first step becomes a "
    "non-zero token; fix: return Tokens(zero_padding(out, mask), mask)"
)


@pytest.mark.xfail(strict=True, raises=ContractError, reason=ALL_PADDING_CLIP)
@pytest.mark.parametrize(
    "config",
    [None, {"hidden": 8, "layers": 2, "bidirectional": False}],
    ids=["defaults", "two-layer-unidirectional"],
)
def test_gru_audio_keeps_the_audio_encoder_contract(config):
    try:
        check_audio_encoder("gru-audio", config)
    except ContractError as exc:
        if "padded tokens must be zero" not in str(exc):
            pytest.fail(f"fails another rule than the known one: {exc}")  # not an xfail
        raise
