"""What reaches the encoders: audio standardised by the model's stored statistics.

Checked at the encoder's input through the public forward pass (a recording stub encoder),
not through the stored buffers, so the check holds wherever the arithmetic lives.
"""

from __future__ import annotations

import torch
from torch import nn

from avsent import Batch, compose
from avsent.contracts import Tokens
from avsent.model import InputSpec

FEATURES, FRAMES = 6, 10
INPUTS = InputSpec(audio_features=FEATURES, video_channels=3, video_frames=4, video_size=8)


class RecordingEncoder(nn.Module):
    """An audio or video encoder that keeps what it was given and returns one token per step."""

    def __init__(self, in_dim: int, out_dim: int = 3) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.proj = nn.Linear(in_dim, out_dim)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        self.seen.append(x.detach().clone())
        # audio [B, F, T] → [B, T, F]; video [B, C, T, H, W] → [B, T, 1]
        steps = x.transpose(1, 2) if x.dim() == 3 else x.mean(dim=(1, 3, 4)).unsqueeze(-1)
        return Tokens(self.proj(steps), mask)


def _audio_model(encoder: RecordingEncoder) -> nn.Module:
    return compose(
        audio=encoder, fusion="passthrough", class_names=("a", "b"), inputs=INPUTS
    ).eval()


def test_the_audio_encoder_receives_features_standardised_per_band() -> None:
    encoder = RecordingEncoder(FEATURES)
    model = _audio_model(encoder)
    mean = torch.linspace(-40.0, -10.0, FEATURES)
    std = torch.linspace(2.0, 12.0, FEATURES)  # no band has std 1: dividing must show
    with torch.no_grad():
        model.audio_mean.copy_(mean)
        model.audio_std.copy_(std)
    z = torch.randn(2, FEATURES, FRAMES, generator=torch.Generator().manual_seed(0))
    audio = mean[None, :, None] + std[None, :, None] * z
    mask = torch.ones(2, FRAMES, dtype=torch.bool)
    with torch.no_grad():
        model(Batch(audio=audio, audio_mask=mask))
    (seen,) = encoder.seen
    torch.testing.assert_close(seen, z)


def test_the_stats_travel_in_the_state_dict_and_are_used_after_loading() -> None:
    mean, std = torch.full((FEATURES,), 5.0), torch.full((FEATURES,), 4.0)
    trained = _audio_model(RecordingEncoder(FEATURES))
    with torch.no_grad():
        trained.audio_mean.copy_(mean)
        trained.audio_std.copy_(std)
    encoder = RecordingEncoder(FEATURES)
    restored = _audio_model(encoder)
    audio = torch.full((1, FEATURES, FRAMES), 13.0)
    with torch.no_grad():
        restored(Batch(audio=audio, audio_mask=torch.ones(1, FRAMES, dtype=torch.bool)))
        restored.load_state_dict(trained.state_dict())
        restored(Batch(audio=audio, audio_mask=torch.ones(1, FRAMES, dtype=torch.bool)))
    torch.testing.assert_close(encoder.seen[0], audio)  # fresh model: identity statistics
    torch.testing.assert_close(encoder.seen[1], torch.full_like(audio, 2.0))  # (13 − 5) / 4


def test_the_video_encoder_receives_crops_on_the_fixed_scale() -> None:
    encoder = RecordingEncoder(1)
    model = compose(
        video=encoder, fusion="passthrough", class_names=("a", "b"), inputs=INPUTS
    ).eval()
    video = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 4, 1, 1).expand(1, 3, 4, 8, 8)
    with torch.no_grad():
        model(Batch(video=video, video_mask=torch.ones(1, 4, dtype=torch.bool)))
    (seen,) = encoder.seen
    torch.testing.assert_close(seen[0, 0, :, 0, 0], torch.tensor([-2.0, -1.0, 0.0, 2.0]))
