"""Build your own audio-visual model in a few lines, then run it on random inputs.

1. From registered parts, by name (with their config fields as a dict).
2. From your own ``nn.Module`` that keeps the audio-encoder contract (avsent.contracts):
   ``forward(x [B, F, T], mask [B, T]) -> Tokens`` and an ``out_dim`` attribute.

Run:  python examples/custom_model.py
"""

from __future__ import annotations

import torch
from torch import nn

from avsent import Batch, InputSpec, compose
from avsent.contracts import Tokens

INPUTS = InputSpec(audio_features=40, video_channels=3, video_frames=8, video_size=32)


class TinyGRUAudio(nn.Module):
    """A user's audio encoder: a GRU over feature frames, one token per frame."""

    def __init__(self, in_features: int, hidden: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(in_features, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        out, _ = self.gru(x.transpose(1, 2))  # [B, T, hidden]
        return Tokens(out * mask.unsqueeze(-1), mask)


def random_batch(size: int = 2) -> Batch:
    """Two clips of different lengths: the second is padded, and the mask says where."""
    frames = 60
    audio_mask = torch.arange(frames)[None, :] < torch.tensor([60, 35])[:size, None]
    video_mask = torch.arange(INPUTS.video_frames)[None, :] < torch.tensor([8, 5])[:size, None]
    return Batch(
        audio=torch.randn(size, INPUTS.audio_features, frames),
        audio_mask=audio_mask,
        video=torch.rand(size, 3, INPUTS.video_frames, INPUTS.video_size, INPUTS.video_size),
        video_mask=video_mask,
    )


def print_probabilities(title: str, model: nn.Module, batch: Batch) -> None:
    model.eval()
    with torch.no_grad():
        probs = model(batch).logits.softmax(dim=-1)
    params = sum(p.numel() for p in model.parameters())
    print(f"{title} ({params / 1e6:.2f}M parameters)")
    for i, row in enumerate(probs):
        best = int(row.argmax())
        shown = ", ".join(
            f"{n} {p:.2f}" for n, p in zip(model.class_names, row.tolist(), strict=True)
        )
        print(f"  clip {i}: {model.class_names[best]:<9} | {shown}")


def main() -> None:
    torch.manual_seed(0)
    batch = random_batch()

    # 1. Named parts: a small DRSN and a plain 3D-DenseNet, intra-modal and cross-modal attention.
    named = compose(
        audio=("drsn", {"stem_channels": 8, "widths": [8, 16]}),
        video=("densenet3d", {"growth_rate": 8, "block_config": [2, 2], "num_init_features": 16}),
        audio_intra=("ima", {"d_model": 32, "heads": 4}),
        video_intra=("ima", {"d_model": 32, "heads": 4}),
        fusion=("cma", {"d_model": 32}),
        head="linear",
        inputs=INPUTS,
    )
    print_probabilities("named parts", named, batch)

    # 2. Your own module in the audio slot; the rest by name. No video: pass-through fusion.
    own = compose(
        audio=TinyGRUAudio(INPUTS.audio_features),
        audio_intra="ima",
        fusion="passthrough",
        class_names=("negative", "neutral", "positive"),
        inputs=INPUTS,
    )
    print_probabilities("own GRU audio encoder", own, batch)


if __name__ == "__main__":
    main()
