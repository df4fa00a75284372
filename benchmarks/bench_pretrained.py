"""What caching a frozen pretrained encoder's embeddings saves: a training epoch each way.

A frozen encoder computes the same vectors every epoch. avsent's way computes them once in
preprocessing and trains over the cached vectors (audio: ``hf-speech-embeddings`` +
``hf-speech-cached``; video: ``faces.embedding = timm-embeddings`` + ``timm-frames-cached``);
the baseline, measured in the same run, runs the frozen encoder in every step (audio:
``hf-speech`` with ``frozen = true`` over the ``waveform`` front-end; video:
``timm-frames`` with ``frozen = true`` over the face crops). Both train the same head
(``ssl-audio``; ``i3dd-visual`` with the video slot swapped) for one epoch over the same
generated clips, read from the feature cache through the loader, forward + backward + Adam
(no augmentation). The encoders are tiny random checkpoints saved to local files and loaded
through the real path (no network here): a wav2vec2 of 2 layers × 32 wide, and timm's
resnet10t. A real base model costs far more per step, so the ratio measured here is a floor.
``extra_info`` also holds each way's one-off preprocessing time, over the same clips.

    .venv/bin/pytest benchmarks/bench_pretrained.py -p no:cacheprovider --benchmark-only -o addopts=""
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avsent.data.cache import FeatureCache
from avsent.data.features import FeatureExtractor, frontend_fingerprint
from avsent.data.loader import ClipDataset, make_loader
from avsent.data.synthetic import write_av_clip
from avsent.model import build_model, inputs_for
from avsent.run_config import default_run_config

pytest.importorskip("transformers")

os.environ.setdefault("OMP_NUM_THREADS", "1")
CLIPS = 16  #: an epoch
BATCH = 8
SECONDS = 2.0
CLASSES = ("angry", "happy")
#: the size of the tests' wav2vec2 (tests/plugins/test_hf_speech.py): 200 frames per second
TINY_WAV2VEC2 = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16),
    "conv_kernel": (10, 3, 3),
    "conv_stride": (5, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "mask_time_prob": 0.0,
}
SHARED = {"train.device": "cpu"}
#: the recipe's audio.num_layers does not apply to hf-speech, which says so
pytestmark = pytest.mark.filterwarnings("ignore::avsent.config.SlotFieldsDropped")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoints and the clips: WAVs for audio, small MP4s (no face: centre crops)."""
    import timm
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2)).save_pretrained(root / "wav2vec2")
    save_file(
        timm.create_model("resnet10t", num_classes=0).state_dict(),
        str(root / "resnet10t.safetensors"),
    )
    rng = np.random.default_rng(0)
    rate = 16000
    t = np.arange(int(SECONDS * rate)) / rate
    for i in range(CLIPS):
        tone = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(root / f"clip{i}.wav", tone.astype(np.float32), rate)
        frames = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
        write_av_clip(root / f"clip{i}.mp4", frames, 4, tone.astype(np.float32), rate)
    return root


def _configs(folder: Path, modality: str) -> dict[str, dict]:
    """The overrides of each way."""
    if modality == "audio":
        model = str(folder / "wav2vec2")
        narrow = {"audio.projection": 8, "audio_intra.heads": 2, **SHARED}
        return {
            "avsent-cached": {
                "audio_frontend.model": model,
                "audio.num_layers": TINY_WAV2VEC2["num_hidden_layers"] + 1,
                **narrow,
            },
            "recomputed": {
                "audio_frontend.name": "waveform",
                "audio.name": "hf-speech",
                "audio.model": model,
                "audio.frozen": True,
                **narrow,
            },
        }
    weights = str(folder / "resnet10t.safetensors")
    faces = {"faces.num_frames": 8, "faces.no_face": "center", "video_intra.heads": 2, **SHARED}
    return {
        "avsent-cached": {
            "faces.embedding.name": "timm-embeddings",
            "faces.embedding.model": "resnet10t",
            "faces.embedding.weights_file": weights,
            "video.name": "timm-frames-cached",
            **faces,
        },
        "recomputed": {
            "video.name": "timm-frames",
            "video.model": "resnet10t",
            "video.weights_file": weights,
            "video.frozen": True,
            **faces,
        },
    }


RECIPES = {"audio": ("ssl-audio", "wav"), "video": ("i3dd-visual", "mp4")}


def _prepare(folder: Path, modality: str, way: str, tmp: Path):
    """The way's model, optimizer and loader (whole clips: no training crop) over a cache
    filled by the real extractor, and the seconds that extraction took."""
    recipe, suffix = RECIPES[modality]
    config = default_run_config(recipe, _configs(folder, modality)[way])
    cache = FeatureCache(tmp / "cache")
    fingerprint = frontend_fingerprint(config)
    extractor = FeatureExtractor(config)
    items = []
    start = time.perf_counter()
    for i in range(CLIPS):
        path = folder / f"clip{i}.{suffix}"
        key = cache.key_for(path, fingerprint)
        cache.put(key, extractor.extract(path))
        items.append((key, i % len(CLASSES)))
    seconds = time.perf_counter() - start
    torch.manual_seed(0)
    model = build_model(config, inputs_for(config), CLASSES).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    dataset = ClipDataset(items, cache, train=True)
    loader = make_loader(dataset, batch_size=BATCH, shuffle=True, workers=0)
    return model, optimizer, loader, seconds


def _epoch(model, optimizer, loader) -> None:
    for batch in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(batch).logits, batch.targets)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("modality", ["audio", "video"])
@pytest.mark.parametrize("way", ["avsent-cached", "recomputed"])
def test_frozen_encoder_epoch(benchmark, folder, tmp_path, modality, way):
    torch.set_num_threads(1)
    model, optimizer, loader, seconds = _prepare(folder, modality, way, tmp_path)
    _epoch(model, optimizer, loader)  # warm-up: first-call allocations
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    benchmark.extra_info.update(
        clips=CLIPS, batch=BATCH, preprocess_s=round(seconds, 3), trainable_params=trainable
    )
    benchmark.pedantic(_epoch, args=(model, optimizer, loader), rounds=5, iterations=1)
