"""Compiled ≡ eager on a tiny full model, in the default run.

The full-size check (``test_model.py::test_compiled_model_matches_eager``, slow) also runs
Inductor's code generation. This one keeps what breaks most often, TorchDynamo's tracing
of the model (masks, ``Tokens``, the absent-modality path, data-dependent branches) and
AOTAutograd's graphs forward and backward, on the ``aot_eager`` backend, which runs the
traced graphs with eager kernels and so takes seconds instead of minutes on a CPU.
"""

from __future__ import annotations

import pytest
import torch

from avsent import Batch, compose
from avsent.model import InputSpec

INPUTS = InputSpec(audio_features=20, video_channels=3, video_frames=4, video_size=16)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return compose(
        audio=("drsn", {"stem_channels": 4, "widths": [4, 8], "units_per_stage": 1}),
        video=("i3dd", {"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8}),
        audio_intra="ima",
        video_intra="ima",
        fusion="cma",
        class_names=("a", "b", "c"),
        inputs=INPUTS,
    )


def _batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    audio_mask = torch.arange(24)[None] < torch.tensor([[24], [15]])
    return Batch(
        audio=torch.randn(2, INPUTS.audio_features, 24, generator=g),
        audio_mask=audio_mask,
        video=torch.rand(2, 3, 4, 16, 16, generator=g),
        video_mask=torch.tensor([[True] * 4, [True, True, False, False]]),
        targets=torch.tensor([0, 2]),
    )


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_forward_matches_eager_with_padding_and_a_dropped_modality() -> None:
    model = _tiny_model().eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
    batch = _batch()
    dropped = Batch(audio=batch.audio, audio_mask=batch.audio_mask, targets=batch.targets)
    with torch.no_grad():
        for b in (batch, dropped):
            torch.testing.assert_close(compiled(b).logits, model(b).logits, atol=1e-5, rtol=1e-5)


def test_compiled_training_step_gives_the_eager_gradients() -> None:
    eager, compiled_model = _tiny_model().train(), _tiny_model().train()
    compiled = torch.compile(compiled_model, backend="aot_eager")
    batch = _batch()
    for run in (eager, compiled):
        torch.manual_seed(2)  # the same dropout masks in both
        loss = torch.nn.functional.cross_entropy(run(batch).logits, batch.targets)
        loss.backward()
    for (name, a), (_, b) in zip(
        eager.named_parameters(), compiled_model.named_parameters(), strict=True
    ):
        assert b.grad is not None, name
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)
