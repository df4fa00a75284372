"""The "timm-frames" encoder: any timm backbone per frame, tokens over time, offline weights."""

from __future__ import annotations

import pytest
import torch

from avsent.errors import ConfigError, WeightsUnavailableError
from avsent.plugins.timm_video import TimmFrames, TimmFramesConfig
from avsent.registry import get_registry


@pytest.mark.parametrize(("stride", "tokens"), [(1, 6), (2, 3), (4, 2)])
def test_one_token_per_frame_or_stride(stride, tokens):
    config = TimmFramesConfig(model="resnet10t", temporal_stride=stride)
    model = TimmFrames(config, in_channels=1, frames=6, size=32).eval()
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])
    out = model(torch.randn(2, 1, 6, 32, 32), mask)
    assert out.x.shape == (2, tokens, model.out_dim)
    assert out.mask[0].all() and out.mask[1, 0] and not out.mask[1, -1]


def test_registered():
    component = get_registry().get("video_encoder", "timm-frames")
    config = component.config(model="resnet10t")
    assert component.build(config, in_channels=3, frames=4, size=32).out_dim == 512


def test_unknown_model_suggests_names():
    with pytest.raises(ConfigError, match="timm has no model 'resnet1'; similar"):
        TimmFrames(TimmFramesConfig(model="resnet1"), in_channels=3, frames=4, size=32)


def test_pretrained_offline_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="weights_file.*pretrained=false"):
        TimmFrames(
            TimmFramesConfig(model="resnet10t", pretrained=True), in_channels=3, frames=4, size=32
        )


def test_pretrained_from_a_local_file(tmp_path):
    import timm

    source = timm.create_model("resnet10t", num_classes=0)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    config = TimmFramesConfig(model="resnet10t", pretrained=True, weights_file=str(path))
    model = TimmFrames(config, in_channels=3, frames=2, size=32)
    assert torch.equal(model.backbone.conv1[0].weight, source.conv1[0].weight)


def test_padded_frames_do_not_reach_real_tokens():
    config = TimmFramesConfig(model="resnet10t", temporal_stride=2)
    model = TimmFrames(config, in_channels=3, frames=4, size=32).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    mask = torch.tensor([[True, True, True, False]])
    noisy = x.clone()
    noisy[:, :, 3] = 50 * torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        clean, dirty = model(x, mask), model(noisy, mask)
    torch.testing.assert_close(clean.x[0, :2], dirty.x[0, :2])
    assert clean.mask.tolist() == [[True, True]]


def test_pretrained_from_a_safetensors_file_frozen_or_fine_tuned(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet10t", num_classes=0)
    path = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), str(path))
    frozen = TimmFrames(
        TimmFramesConfig(model="resnet10t", weights_file=str(path), frozen=True),
        in_channels=3,
        frames=2,
        size=32,
    ).train()
    assert torch.equal(frozen.backbone.conv1[0].weight, source.conv1[0].weight)
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    assert not frozen.backbone.training  # BatchNorm statistics stay the pretrained ones
    tuned = TimmFrames(
        TimmFramesConfig(model="resnet10t", weights_file=str(path), lr_scale=0.1),
        in_channels=3,
        frames=2,
        size=32,
    )
    assert tuned.backbone.lr_scale == 0.1 and tuned.train().backbone.training


def test_a_missing_weights_file_is_named(tmp_path):
    config = TimmFramesConfig(model="resnet10t", weights_file=str(tmp_path / "none.safetensors"))
    with pytest.raises(WeightsUnavailableError, match=r"video\.weights_file: .*none\.safetensors"):
        TimmFrames(config, in_channels=3, frames=2, size=32)
