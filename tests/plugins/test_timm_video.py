"""The "timm-frames" encoder: any timm backbone per frame, tokens over time, offline weights;
frozen, its vectors cached (timm-embeddings + timm-frames-cached) from a tiny random resnet
saved as safetensors and loaded through the real path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import avsent
from avsent.data.features import frontend_fingerprint
from avsent.data.normalise import standardise_video, video_to_unit
from avsent.data.synthetic import write_av_clip
from avsent.errors import ConfigError, WeightsUnavailableError
from avsent.model import build_model, inputs_for
from avsent.plugins.timm_video import (
    CachedConfig,
    EmbeddingsConfig,
    TimmEmbeddings,
    TimmFrames,
    TimmFramesCached,
    TimmFramesConfig,
)
from avsent.registry import get_registry
from avsent.run_config import default_run_config
from avsent.testing import check_face_embedding, check_video_encoder
from avsent.training.trainer import train


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


# -- frozen and cached: timm-embeddings + timm-frames-cached ---------------------------------


def save_resnet(path: Path, seed: int = 0) -> str:
    """A randomly initialised resnet10t as a local safetensors checkpoint."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_resnet(tmp_path_factory.mktemp("timm") / "resnet10t.safetensors")


def cached_overrides(weights: str, root: Path | None = None) -> dict:
    """i3dd-visual with the frozen resnet's cached vectors in place of I3DD on crops."""
    out = {
        "faces.embedding.name": "timm-embeddings",
        "faces.embedding.model": "resnet10t",
        "faces.embedding.weights_file": weights,
        "faces.num_frames": 4,
        "faces.no_face": "center",
        "video.name": "timm-frames-cached",
        "video_intra.heads": 2,
        "train.device": "cpu",
    }
    if root is not None:
        out |= {
            "data.dataset.name": "folder",
            "data.dataset.root": str(root / "clips"),
            "data.cache_dir": str(root / "cache"),
            "data.workers": 0,
            "data.split.val_fraction": 0.0,
            "data.split.test_fraction": 0.0,
            "train.epochs": 1,
            "train.batch_size": 4,
        }
    return out


def test_cached_components_keep_their_contracts(resnet):
    check_face_embedding("timm-embeddings", {"model": "resnet10t", "weights_file": resnet})
    check_video_encoder("timm-frames-cached", {"temporal_stride": 2}, in_channels=16, size=1)


def test_cached_tokens_are_a_frozen_timm_frames_tokens(resnet):
    crops = np.random.default_rng(0).integers(0, 256, (2, 5, 32, 32, 3), dtype=np.uint8)
    embed = TimmEmbeddings(EmbeddingsConfig(model="resnet10t", weights_file=resnet))
    stored = torch.from_numpy(np.stack([embed(clip)[:, None, None] for clip in crops]))
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    frozen = TimmFrames(
        TimmFramesConfig(model="resnet10t", weights_file=resnet, frozen=True, temporal_stride=2),
        in_channels=3,
        frames=5,
        size=32,
    ).train()
    cached = TimmFramesCached(CachedConfig(temporal_stride=2), in_channels=512, frames=5, size=1)
    with torch.no_grad():
        want = frozen(standardise_video(video_to_unit(torch.from_numpy(crops))), mask)
    got = cached(video_to_unit(stored), mask)
    torch.testing.assert_close(got.x, want.x, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.mask, want.mask)


def test_the_cache_key_changes_with_the_weights_file(tmp_path):
    weights = save_resnet(tmp_path / "resnet.safetensors", seed=0)
    config = default_run_config("i3dd-visual", cached_overrides(weights))
    before = frontend_fingerprint(config)
    assert frontend_fingerprint(config) == before
    save_resnet(tmp_path / "resnet.safetensors", seed=1)  # same file name, other weights
    assert frontend_fingerprint(config) != before


def test_the_model_sees_the_cached_vectors_as_they_are(resnet):
    config = default_run_config("i3dd-visual", cached_overrides(resnet))
    inputs = inputs_for(config)
    assert (inputs.video_channels, inputs.video_size, inputs.video_embedded) == (512, 1, True)
    model = build_model(config, inputs, ("calm", "angry")).eval()
    video = torch.randn(1, 512, 4, 1, 1)
    mask = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        encoded = model.encode_video(avsent.Batch(video=video, video_mask=mask))
        want = model.video_intra(model.video_encoder(video, mask))
    torch.testing.assert_close(encoded.x, want.x)  # not standardised as pixels are


def _clips(root: Path) -> None:
    """Six small noisy MP4s in two classes (no face: centre crops, faces.no_face)."""
    rng = np.random.default_rng(0)
    for label in ("angry", "happy"):
        (root / "clips" / label).mkdir(parents=True)
        for i in range(3):
            frames = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
            samples = (0.1 * rng.standard_normal(8000)).astype(np.float32)
            path = root / "clips" / label / f"s{i}_{label}.mp4"
            write_av_clip(path, frames, 12, samples, 16000)


def test_frozen_embeddings_are_computed_once_and_reused(resnet, tmp_path, monkeypatch):
    _clips(tmp_path)
    calls = []
    original = TimmEmbeddings.__call__
    monkeypatch.setattr(
        TimmEmbeddings,
        "__call__",
        lambda self, crops: calls.append(len(crops)) or original(self, crops),
    )
    config = default_run_config("i3dd-visual", cached_overrides(resnet, tmp_path))
    first = train(config, run_dir=tmp_path / "run1", progress=False)
    assert calls == [4] * 6
    second = train(config, run_dir=tmp_path / "run2", progress=False)
    assert len(calls) == 6, "the second run recomputed cached embeddings"
    assert first.fit.history and second.fit.history
