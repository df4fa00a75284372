"""hf_speech: tiny random wav2vec2 checkpoints saved with ``save_pretrained`` and loaded
through the real path; offline errors; weights in the cache key; the separate learning
rate; mavsa-di-ssl trained a step frozen and fine-tuned; cached embeddings reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("transformers")

import huggingface_hub.constants
from transformers import Wav2Vec2Config, Wav2Vec2Model

import avsent
from avsent.data.features import frontend_fingerprint
from avsent.errors import ConfigError, WeightsUnavailableError
from avsent.plugins import hf_speech
from avsent.run_config import default_run_config
from avsent.testing import check_audio_encoder, check_audio_frontend
from avsent.training.loop import param_groups
from avsent.training.schedule import set_lr
from avsent.training.trainer import train

#: 2 layers of width 32 over a 3-conv front of stride 80 (200 frames per second)
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16),
    "conv_kernel": (10, 3, 3),
    "conv_stride": (5, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "layer",  # per-frame norms: a clip alone equals it in a batch
    "do_stable_layer_norm": True,
    "mask_time_prob": 0.0,
}
HIDDEN_STATES = TINY["num_hidden_layers"] + 1


def save_tiny(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(**TINY)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny(tmp_path_factory.mktemp("wav2vec2") / "tiny"))


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hugging Face cache with nothing in it, so hub names are missing."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def ssl_overrides(tiny: str, root: Path | None = None, **extra) -> dict:
    """mavsa-di-ssl / ssl-audio on the tiny checkpoint with a narrow model."""
    out = {
        "audio_frontend.model": tiny,
        "audio.num_layers": HIDDEN_STATES,
        "audio.projection": 8,
        "audio_intra.heads": 2,
        "train.device": "cpu",
        **extra,
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


def test_components_keep_their_contracts(tiny):
    check_audio_encoder("hf-speech", {"model": tiny, "projection": 8}, in_features=1, steps=1600)
    check_audio_encoder("hf-speech", {"model": tiny, "frozen": True}, in_features=1, steps=800)
    check_audio_encoder("hf-speech-cached", {"num_layers": 3, "projection": 8}, in_features=96)
    check_audio_frontend("hf-speech-embeddings", {"model": tiny})
    check_audio_frontend("waveform")


def test_embeddings_describe_the_stored_layers(tiny):
    config = hf_speech.EmbeddingsConfig(model=tiny, layers=[0, 2])
    spec = hf_speech.HFSpeechEmbeddings.describe(config)
    assert [b.name for b in spec.bands] == ["layer0", "layer2"]
    assert spec.rows == 64 and spec.frames_per_second == 200.0
    features = hf_speech.HFSpeechEmbeddings(config)(np.zeros(8000, np.float32))
    assert features.shape == (64, 100)  # 8000 samples → 1599 → 400 → 100 frames
    with pytest.raises(ConfigError, match=r"audio_frontend.layers.*0\.\.2, not \[5\]"):
        hf_speech.HFSpeechEmbeddings.describe(hf_speech.EmbeddingsConfig(model=tiny, layers=[5]))


def test_a_chosen_layer_is_that_hidden_state(tiny):
    encoder = hf_speech.HFSpeech(
        hf_speech.HFSpeechConfig(model=tiny, layer=1, projection=0), in_features=1
    ).eval()
    wave = torch.randn(1, 1, 4000)
    with torch.no_grad():
        expected = encoder.pretrained(wave[:, 0], output_hidden_states=True).hidden_states[1]
        tokens = encoder(wave, torch.ones(1, 4000, dtype=torch.bool))
    torch.testing.assert_close(tokens.x, expected)
    assert encoder.mix.weights is None and encoder.out_dim == 32


def test_a_missing_hub_model_says_how_to_fetch_it(empty_hub_cache):
    with pytest.raises(
        WeightsUnavailableError,
        match=r"^audio\.model: .*'facebook/wav2vec2-base' is not in the Hugging Face cache\. "
        r".*huggingface-cli download facebook/wav2vec2-base.*audio\.download=true",
    ):
        hf_speech.HFSpeech(hf_speech.HFSpeechConfig(), in_features=1)


def test_download_allowed_still_respects_hf_hub_offline(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = hf_speech.EmbeddingsConfig(download=True)
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE is set"):
        hf_speech.HFSpeechEmbeddings(config)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="is not a folder on this machine"):
        hf_speech.HFSpeechEmbeddings(hf_speech.EmbeddingsConfig(model=str(tmp_path / "nope")))


def test_the_wrong_frontend_is_refused(tiny):
    with pytest.raises(ConfigError, match="audio_frontend.name: hf-speech takes the waveform"):
        hf_speech.HFSpeech(hf_speech.HFSpeechConfig(model=tiny), in_features=140)


def test_the_cache_key_changes_with_the_weights_not_only_the_name(tmp_path):
    folder = str(save_tiny(tmp_path / "model", seed=0))
    config = default_run_config("ssl-audio", ssl_overrides(folder))
    before = frontend_fingerprint(config)
    assert frontend_fingerprint(config) == before
    save_tiny(tmp_path / "model", seed=1)  # same folder, other weights
    assert frontend_fingerprint(config) != before


def test_the_pretrained_part_trains_at_its_own_learning_rate(tiny):
    model = avsent.create_model(
        "drsn-audio",
        audio={"name": "hf-speech", "model": tiny},
        audio_frontend={"name": "waveform"},
    )
    groups = param_groups(model, lr=1e-3)
    pretrained = {id(p) for p in model.audio_encoder.pretrained.parameters()}
    scales = {g["lr_scale"]: {id(p) for p in g["params"]} for g in groups}
    assert set(scales) == {1.0, 0.1} and scales[0.1] == pretrained
    optimizer = torch.optim.Adam(groups)
    set_lr(optimizer, 1e-3, 0.5)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([5e-5, 5e-4])


def _batch(model: avsent.AVModel, rows: int, steps: int) -> avsent.Batch:
    frames = model.inputs.video_frames
    size = model.inputs.video_size
    lengths = torch.tensor([steps, steps // 2])
    return avsent.Batch(
        audio=torch.randn(2, rows, steps),
        audio_mask=torch.arange(steps)[None] < lengths[:, None],
        video=torch.rand(2, 3, frames, size, size),
        video_mask=torch.ones(2, frames, dtype=torch.bool),
        geometry=torch.randn(2, frames, model.inputs.geometry_dim),
        targets=torch.tensor([0, 1]),
    )


TINY_VIDEO = {
    "video": {"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8},
    "video_intra": {"heads": 2},
    "fusion": {"d_model": 8, "heads": 2},
    "faces": {"crop_size": 16, "num_frames": 4},
}


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen-cached", "fine-tuned"])
def test_mavsa_di_ssl_trains_a_step(tiny, frozen):
    audio = {"num_layers": HIDDEN_STATES, "projection": 8}
    frontend = {"model": tiny}
    rows, steps = HIDDEN_STATES * 32, 40
    if not frozen:  # the fine-tuned variant: waveform in, the whole model in the step
        audio = {"name": "hf-speech", "model": tiny, "projection": 8}
        frontend = {"name": "waveform"}
        rows, steps = 1, 4000
    torch.manual_seed(0)
    model = avsent.create_model(
        "mavsa-di-ssl", audio=audio, audio_frontend=frontend, audio_intra={"heads": 2}, **TINY_VIDEO
    )
    optimizer = torch.optim.Adam(param_groups(model, lr=1e-3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    out = model(_batch(model, rows, steps))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1])).backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    pretrained = {n for n in moved if ".pretrained." in n}
    assert "audio_encoder.mix.weights" in moved
    assert all(any(n.startswith(f"{part}.") for n in moved) for part in ("video_encoder", "head"))
    if frozen:
        assert not any(".pretrained." in n for n in before)  # nothing pretrained in the model
    else:  # the transformer fine-tunes; the CNN feature encoder stays as it was
        assert any(".encoder.layers." in n for n in pretrained)
        assert not any(".feature_extractor." in n for n in pretrained)


def _clips(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label in ("angry", "happy"):
        (root / "clips" / label).mkdir(parents=True)
        for i in range(3):
            tone = np.sin(np.linspace(0, 400 * (i + 1), 8000)) * (0.5 if label == "angry" else 0.1)
            sf.write(
                root / "clips" / label / f"s{i}_{label}.wav",
                tone + 0.01 * rng.standard_normal(8000),
                16000,
            )


def test_frozen_embeddings_are_computed_once_and_reused(tiny, tmp_path, monkeypatch):
    _clips(tmp_path)
    calls = []
    original = hf_speech.HFSpeechEmbeddings.__call__
    monkeypatch.setattr(
        hf_speech.HFSpeechEmbeddings,
        "__call__",
        lambda self, samples: calls.append(len(samples)) or original(self, samples),
    )
    config = default_run_config("ssl-audio", ssl_overrides(tiny, tmp_path))
    first = train(config, run_dir=tmp_path / "run1", progress=False)
    assert len(calls) == 6
    second = train(config, run_dir=tmp_path / "run2", progress=False)
    assert len(calls) == 6, "the second run recomputed cached embeddings"
    assert first.fit.history and second.fit.history
