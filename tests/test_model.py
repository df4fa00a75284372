"""Model assembly: parts by name or module, absent modalities, normalisation, compile."""

from __future__ import annotations

import pytest
import torch

import avsent
from avsent.data.normalise import InputStats, set_model_stats
from avsent.errors import ConfigError
from avsent.model import Batch, InputSpec, compose

INPUTS = InputSpec(audio_features=12, video_channels=3, video_frames=8, video_size=32)


def batch(size: int = 2) -> Batch:
    return Batch(
        audio=torch.randn(size, 12, 20),
        audio_mask=torch.ones(size, 20, dtype=torch.bool),
        video=torch.rand(size, 3, 8, 32, 32),
        video_mask=torch.ones(size, 8, dtype=torch.bool),
    )


def test_a_model_needs_one_modality():
    with pytest.raises(ConfigError, match="at least one"):
        compose(audio=None, video=None, inputs=INPUTS)


def test_audio_statistics_normalise_the_input_and_travel_in_the_state_dict():
    model = compose(audio=("drsn", {"widths": [8, 16]}), fusion="passthrough", inputs=INPUTS)
    set_model_stats(model, InputStats(torch.full((12,), 3.0), torch.full((12,), 0.0)))
    state = model.state_dict()
    assert torch.equal(state["audio_mean"], torch.full((12,), 3.0))
    assert state["audio_std"].min() > 0  # a zero std is clamped, never a division by 0


def test_absent_modality_is_ignored_even_when_the_batch_has_it():
    model = compose(
        audio=("drsn", {"widths": [8, 16]}),
        fusion="passthrough",
        class_names=("a", "b"),
        inputs=INPUTS,
    ).eval()
    full = batch()
    without_video = Batch(audio=full.audio, audio_mask=full.audio_mask)
    with torch.no_grad():
        assert torch.equal(model(full).logits, model(without_video).logits)


@pytest.mark.slow  # torch.compile takes tens of seconds on a CPU
def test_compiled_model_matches_eager():
    model = avsent.create_model("mavsa-di-small").eval()
    data = batch()
    data = Batch(
        audio=torch.randn(2, model.inputs.audio_features, 20),
        audio_mask=data.audio_mask,
        video=data.video,
        video_mask=data.video_mask,
    )
    with torch.no_grad():
        eager = model(data).logits
        compiled = torch.compile(model)(data).logits
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


def test_a_missing_modality_reaches_the_fusion_as_tokens_without_real_steps():
    from avsent import Batch, compose

    torch.manual_seed(0)
    model = compose(
        audio=("drsn", {"stem_channels": 4, "widths": [4, 8], "units_per_stage": 1}),
        video=("i3dd", {"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8}),
        audio_intra="ima",
        video_intra="ima",
        fusion="cma",
        inputs=INPUTS,
    ).eval()
    audio = torch.randn(2, INPUTS.audio_features, 30)
    video = torch.rand(2, 3, INPUTS.video_frames, INPUTS.video_size, INPUTS.video_size)
    masks = {
        "audio_mask": torch.ones(2, 30, dtype=torch.bool),
        "video_mask": torch.zeros(2, INPUTS.video_frames, dtype=torch.bool),  # dropped
    }
    with torch.no_grad():
        without = model(Batch(audio=audio, audio_mask=masks["audio_mask"])).logits
        dropped = model(Batch(audio=audio, video=video, **masks)).logits
        present = {**masks, "video_mask": torch.ones_like(masks["video_mask"])}
        both = model(Batch(audio=audio, video=video, **present)).logits
    torch.testing.assert_close(without, dropped)  # absent ≡ all padding
    assert not torch.allclose(without, both)  # and the video does count when present
