"""Self-supervised speech models (wav2vec2, HuBERT, WavLM) from Hugging Face ``transformers``.

Two ways to use one, both choosing the checkpoint by hub name or local folder:

* **fine-tuned** — front-end ``waveform`` (16 kHz samples as a [1, N] map) with encoder
  ``hf-speech``, which runs the whole model in every step; its parameters train at
  ``train.lr × audio.lr_scale`` (a module's ``lr_scale``, read by the trainer's optimizer).
* **frozen, cached** — front-end ``hf-speech-embeddings`` runs the model once per clip in
  ``avsent preprocess``; the feature cache stores its hidden states, and the cache key
  holds a hash of the weights (:meth:`HFSpeechEmbeddings.identity`), so another checkpoint
  never reads them. Encoder ``hf-speech-cached`` then only learns the layer weights (and a
  projection): training costs seconds per epoch on a CPU.

Either way the layers are combined as SUPERB does — a softmax-weighted sum of the hidden
states with learnable weights — or one chosen layer is used. Nothing is downloaded unless
``download`` is set (and ``HF_HUB_OFFLINE`` is not): a missing model is one
:class:`~avsent.errors.WeightsUnavailableError` saying how to fetch it. ``transformers`` is
the optional extra ``avsent[pretrained]``; it is imported only when a model is built.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from attrs import validators as v
from torch import nn

from avsent.contracts import Band, FeatureSpec, Tokens
from avsent.errors import ConfigError, WeightsUnavailableError
from avsent.hookspecs import hookimpl
from avsent.layers.masks import zero_padding
from avsent.recipe import Recipe

#: what every wav2vec2-family checkpoint is trained on
SAMPLE_RATE = 16000
DEFAULT_MODEL = "facebook/wav2vec2-base"
#: files of a checkpoint folder that decide what it computes (hashed into the cache key)
_WEIGHT_PATTERNS = ("config.json", "*.safetensors", "*.bin", "*.index.json")
_CHUNK = 1 << 20


# -- locating and loading a checkpoint ------------------------------------------------------


def _hub_offline() -> bool:
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _unavailable(model: str, field: str, why: str) -> WeightsUnavailableError:
    if _looks_local(model):
        return WeightsUnavailableError(f"{field}: pretrained speech model {model!r} {why}")
    download = f"{field.rsplit('.', 1)[0]}.download=true"
    return WeightsUnavailableError(
        f"{field}: pretrained speech model {model!r} {why}. On a machine with internet run "
        f"`huggingface-cli download {model} --local-dir FOLDER`, copy FOLDER here and set "
        f"{field}=FOLDER (or, where downloading is allowed, set {download})"
    )


def _looks_local(model: str) -> bool:
    """A path rather than a hub name (``org/name`` or ``name``)."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def checkpoint_folder(model: str, *, download: bool, field: str) -> Path:
    """The local folder holding ``model`` (a folder, or a hub name found in the HF cache,
    fetched first only when ``download`` is set and ``HF_HUB_OFFLINE`` is not)."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder
    if _looks_local(model):
        raise _unavailable(model, field, "is not a folder on this machine")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:
        raise _missing_transformers(field) from None
    try:
        return Path(snapshot_download(model, local_files_only=True))
    except HFValidationError:
        raise _unavailable(model, field, "is neither a folder nor a hub model name") from None
    except LocalEntryNotFoundError:
        if not download:
            raise _unavailable(model, field, "is not in the Hugging Face cache") from None
        if _hub_offline():
            raise _unavailable(
                model, field, "is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
            ) from None
    try:
        return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as exc:  # network, auth, missing repo: all end the same way
        raise _unavailable(model, field, f"could not be downloaded ({exc})") from None


def _missing_transformers(field: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"{field}: pretrained speech models need transformers: pip install 'avsent[pretrained]'"
    )


def load_speech_model(model: str, *, download: bool, field: str) -> nn.Module:
    """The pretrained encoder (``AutoModel``), in eval mode, from local files only."""
    folder = checkpoint_folder(model, download=download, field=field)
    try:
        from transformers import AutoModel
    except ImportError:
        raise _missing_transformers(field) from None
    try:
        backbone = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _unavailable(model, field, f"cannot be loaded from {folder} ({first})") from None
    if not hasattr(backbone, "_get_feat_extract_output_lengths"):
        raise ConfigError(
            field,
            f"{model!r} is a {type(backbone).__name__}, not a speech encoder with a "
            "convolutional front (wav2vec2, HuBERT, WavLM, data2vec-audio)",
        )
    return backbone.eval()


@functools.lru_cache(maxsize=32)
def _model_config(model: str, download: bool, field: str) -> dict[str, Any]:
    """The checkpoint's config.json (sizes and frame rate, without loading any weights)."""
    folder = checkpoint_folder(model, download=download, field=field)
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        why = f"has no readable config.json in {folder} ({exc})"
        raise _unavailable(model, field, why) from None


def _do_normalize(folder: Path) -> bool:
    """Whether the checkpoint's feature extractor standardises each waveform (default yes)."""
    try:
        return bool(json.loads((folder / "preprocessor_config.json").read_text())["do_normalize"])
    except (OSError, ValueError, KeyError):
        return True


def frames_per_second(config: dict[str, Any]) -> float:
    return SAMPLE_RATE / float(np.prod(config["conv_stride"]))


def min_samples(config: dict[str, Any]) -> int:
    """The shortest waveform that gives one frame: the convolutional receptive field."""
    length = 1
    pairs = zip(config["conv_kernel"], config["conv_stride"], strict=True)
    for kernel, stride in reversed(list(pairs)):
        length = (length - 1) * stride + kernel
    return length


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_identity(folder: Path) -> str:
    """sha256 over the config and weight files of a checkpoint folder (memoised per file)."""
    files = sorted({p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern)})
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(path.name.encode())
        digest.update(_file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def _standardise(samples: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per clip over its real samples (Wav2Vec2FeatureExtractor's
    ``do_normalize``), padding left at zero."""
    weight = mask.to(samples.dtype)
    count = weight.sum(1, keepdim=True).clamp_min(1.0)
    mean = (samples * weight).sum(1, keepdim=True) / count
    var = (((samples - mean) * weight) ** 2).sum(1, keepdim=True) / count
    return (samples - mean) / torch.sqrt(var + 1e-7) * weight


def run_speech_model(
    backbone: nn.Module, samples: torch.Tensor, mask: torch.Tensor, shortest: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms [B, N] + mask → hidden states [L+1, B, T, D] and the frame mask [B, T].

    A clip shorter than the receptive field is zero-padded to it, so it keeps one frame;
    padded samples are zeroed, and the attention mask is passed only for checkpoints whose
    feature encoder normalises per frame (``feat_extract_norm="layer"``), as the
    transformers processors do: group-norm models (wav2vec2-base) were trained without it.
    """
    lengths = mask.sum(1)
    lengths = torch.where(lengths > 0, lengths.clamp_min(shortest), lengths)
    total = max(samples.shape[1], shortest)
    samples = nn.functional.pad(samples * mask.to(samples.dtype), (0, total - samples.shape[1]))
    sample_mask = torch.arange(total, device=samples.device)[None] < lengths[:, None]
    use_mask = getattr(backbone.config, "feat_extract_norm", "group") == "layer"
    out = backbone(
        samples,
        attention_mask=sample_mask.long() if use_mask else None,
        output_hidden_states=True,
    )
    hidden = torch.stack(out.hidden_states)  # [L+1, B, T, D]
    frames = backbone._get_feat_extract_output_lengths(lengths)
    frame_mask = torch.arange(hidden.shape[2], device=samples.device)[None] < frames[:, None]
    return hidden, frame_mask


class LayerMix(nn.Module):
    """SUPERB's weighted sum: softmax-normalised learnable weights over the hidden states
    (starting equal), so the task picks its layers; one layer when ``layer`` is set."""

    def __init__(self, num_layers: int, layer: int | None) -> None:
        super().__init__()
        if layer is not None and not -num_layers <= layer < num_layers:
            raise ConfigError(
                "audio.layer", f"the model has {num_layers} hidden states, not {layer}"
            )
        self.layer = layer
        self.weights = nn.Parameter(torch.zeros(num_layers)) if layer is None else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[L, B, T, D] → [B, T, D]."""
        if self.weights is None:
            return hidden[self.layer]
        return torch.einsum("l,lbtd->btd", self.weights.softmax(0), hidden)


# -- front-ends -------------------------------------------------------------------------------


@attrs.define
class WaveformConfig:
    #: per-clip zero mean, unit variance, as a wav2vec2 feature extractor's do_normalize
    #: (set false for checkpoints whose preprocessor_config.json says do_normalize: false)
    normalize: bool = True


class Waveform:
    """Samples [N] → float32 [1, N] at 16 kHz: a one-row "feature map" whose frames are
    samples, so the loader's padding, masks, crops and cache need nothing new."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: WaveformConfig | None = None) -> None:
        self.config = config or WaveformConfig()
        self.spec = self.describe(self.config)

    @staticmethod
    def describe(config: WaveformConfig | None) -> FeatureSpec:
        """One row of samples, neither frequency bins nor dB: spectral augmentations refuse it."""
        return FeatureSpec(bands=(Band("waveform", 0, 1),), frames_per_second=SAMPLE_RATE)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(f"expected mono samples [N] with N > 0, got shape {samples.shape}")
        if self.config.normalize:
            samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
        return samples[None, :].astype(np.float32, copy=False)


def _layers_field(instance: Any, attribute: attrs.Attribute, value: list[int] | None) -> None:
    if value is not None and (not value or len(set(value)) != len(value)):
        raise ValueError(f"must be a non-empty list of distinct layers, got {value!r}", attribute)


@attrs.define
class EmbeddingsConfig:
    model: str = DEFAULT_MODEL  #: hub name or local folder
    #: hidden states to store, 0 = the CNN features' projection; None = all (for the
    #: weighted sum: 13 × 768 rows for a base model, 25 × 1024 for a large one)
    layers: list[int] | None = attrs.field(default=None, validator=_layers_field)
    download: bool = False  #: may fetch a model missing from the Hugging Face cache


class HFSpeechEmbeddings:
    """Samples [N] → float32 [K·D, T]: K stored hidden states of a frozen speech model,
    stacked on the rows (one band each), at the model's frame rate (50 per second)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: EmbeddingsConfig | None = None) -> None:
        self.config = c = config or EmbeddingsConfig()
        field = "audio_frontend.model"
        self.backbone = load_speech_model(c.model, download=c.download, field=field)
        folder = checkpoint_folder(c.model, download=False, field=field)
        self.normalize = _do_normalize(folder)
        self.model_config = _model_config(c.model, False, field)
        self.shortest = min_samples(self.model_config)
        self.spec = self.describe(c)
        self.layers = _stored_layers(c, self.model_config)

    @staticmethod
    def describe(config: EmbeddingsConfig | None) -> FeatureSpec:
        c = config or EmbeddingsConfig()
        model_config = _model_config(c.model, c.download, "audio_frontend.model")
        width = int(model_config["hidden_size"])
        bands = tuple(
            Band(f"layer{layer}", i * width, (i + 1) * width)
            for i, layer in enumerate(_stored_layers(c, model_config))
        )
        return FeatureSpec(bands=bands, frames_per_second=frames_per_second(model_config))

    @staticmethod
    def identity(config: EmbeddingsConfig | None) -> str:
        """A hash of the checkpoint's weights: part of the cache key, so features computed
        by other weights under the same name (a re-trained folder) are never served."""
        c = config or EmbeddingsConfig()
        field = "audio_frontend.model"
        return weights_identity(checkpoint_folder(c.model, download=c.download, field=field))

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(f"expected mono samples [N] with N > 0, got shape {samples.shape}")
        wave = torch.from_numpy(samples)[None]
        mask = torch.ones_like(wave, dtype=torch.bool)
        if self.normalize:
            wave = _standardise(wave, mask)
        hidden, frame_mask = run_speech_model(self.backbone, wave, mask, self.shortest)
        chosen = hidden[list(self.layers), 0][:, frame_mask[0]]  # [K, T, D]
        rows = chosen.permute(0, 2, 1).reshape(-1, chosen.shape[1])  # [K·D, T]
        return rows.float().numpy()


def _stored_layers(config: EmbeddingsConfig, model_config: dict[str, Any]) -> tuple[int, ...]:
    count = int(model_config["num_hidden_layers"]) + 1
    layers = tuple(range(count)) if config.layers is None else tuple(config.layers)
    bad = [layer for layer in layers if not 0 <= layer < count]
    if bad:
        raise ConfigError(
            "audio_frontend.layers", f"{config.model!r} has hidden states 0..{count - 1}, not {bad}"
        )
    return layers


# -- encoders ---------------------------------------------------------------------------------


@attrs.define
class HFSpeechConfig:
    model: str = DEFAULT_MODEL  #: hub name or local folder
    layer: int | None = None  #: one hidden state (0 = CNN features); None = weighted sum
    projection: int = attrs.field(default=256, validator=v.ge(0))  #: output width; 0 = hidden
    frozen: bool = False  #: no training of the pretrained part (cached: hf-speech-embeddings)
    freeze_feature_encoder: bool = True  #: keep the CNN fixed while fine-tuning, as is usual
    #: the pretrained part's learning rate as a multiple of train.lr (follows its schedule)
    lr_scale: float = attrs.field(default=0.1, validator=v.gt(0.0))
    download: bool = False  #: may fetch a model missing from the Hugging Face cache


class HFSpeech(nn.Module):
    """Waveform [B, 1, N] + sample mask → Tokens [B, T, out_dim] at the model's frame rate.

    Pair with the ``waveform`` front-end. The backbone sits in ``self.pretrained``, whose
    ``lr_scale`` gives its parameters their own learning rate; the layer weights and the
    projection train at ``train.lr``.
    """

    def __init__(self, config: HFSpeechConfig, *, in_features: int) -> None:
        super().__init__()
        self.config = c = config
        backbone = load_speech_model(c.model, download=c.download, field="audio.model")
        if in_features != 1:
            raise ConfigError(
                "audio_frontend.name",
                f"hf-speech takes the waveform (1 row), got {in_features} rows: use the "
                "'waveform' front-end (or 'hf-speech-embeddings' with audio 'hf-speech-cached')",
            )
        if c.freeze_feature_encoder or c.frozen:
            backbone.freeze_feature_encoder()
        if c.frozen:
            backbone.requires_grad_(False)
        backbone.config.layerdrop = 0.0  # a dropped layer has no hidden state to mix
        self.pretrained = backbone
        self.pretrained.lr_scale = c.lr_scale
        model_config = backbone.config
        self.shortest = min_samples(model_config.to_dict())
        self.mix = LayerMix(model_config.num_hidden_layers + 1, c.layer)
        width = model_config.hidden_size
        self.proj = nn.Linear(width, c.projection) if c.projection else None
        self.out_dim = c.projection or width

    def train(self, mode: bool = True) -> HFSpeech:
        super().train(mode)
        if self.config.frozen:  # dropout and SpecAugment-style masking stay off
            self.pretrained.eval()
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
            hidden, frame_mask = run_speech_model(self.pretrained, x[:, 0], mask, self.shortest)
        tokens = self.mix(hidden)
        if self.proj is not None:
            tokens = self.proj(tokens)
        return Tokens(zero_padding(tokens, frame_mask), frame_mask)


@attrs.define
class CachedConfig:
    #: how many hidden states the front-end stacked (audio_frontend.layers; all of a base
    #: model = 13, of a large one = 25); 1 = one layer, used as it is
    num_layers: int = attrs.field(default=1, validator=v.ge(1))
    projection: int = attrs.field(default=256, validator=v.ge(0))  #: output width; 0 = hidden


class HFSpeechCached(nn.Module):
    """Cached hidden states [B, K·D, T] (front-end ``hf-speech-embeddings``) → Tokens
    [B, T, out_dim]: the learnable layer mix and a projection, nothing pretrained."""

    def __init__(self, config: CachedConfig, *, in_features: int) -> None:
        super().__init__()
        self.config = c = config
        if in_features % c.num_layers:
            raise ConfigError(
                "audio.num_layers",
                f"{in_features} feature rows are not {c.num_layers} stacked hidden states: set "
                "it to the number audio_frontend.layers stores (all: num_hidden_layers + 1)",
            )
        self.width = in_features // c.num_layers
        self.mix = LayerMix(c.num_layers, None if c.num_layers > 1 else 0)
        self.proj = nn.Linear(self.width, c.projection) if c.projection else None
        self.out_dim = c.projection or self.width

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        b, _, t = x.shape
        hidden = x.reshape(b, self.config.num_layers, self.width, t).permute(1, 0, 3, 2)
        tokens = self.mix(hidden)
        if self.proj is not None:
            tokens = self.proj(tokens)
        return Tokens(zero_padding(tokens, mask), mask)


# -- registration -----------------------------------------------------------------------------

#: MAVSA-DI's change for a frozen, cached wav2vec2-base: every hidden state stored, mixed
#: by learnable weights, projected to 256; SpecAugment's frequency masks have no
#: frequency rows to act on
SSL_AUDIO: dict[str, Any] = {
    "audio_frontend": {"name": "hf-speech-embeddings", "model": DEFAULT_MODEL},
    "audio": {"name": "hf-speech-cached", "num_layers": 13, "projection": 256},
    "train": {"augment": {"freq_masks": 0}},
}

RECIPES: dict[str, Recipe] = {
    "ssl-audio": Recipe(
        "audio only: a frozen self-supervised speech model (wav2vec2-base, cached "
        "embeddings, SUPERB layer weights) → IMA → FC",
        SSL_AUDIO,
        reference="SUPERB emotion recognition (Yang et al. 2021) with MAVSA-DI's IMA",
        base="drsn-audio",
    ),
    "mavsa-di-ssl": Recipe(
        "MAVSA-DI with the audio slot swapped: frozen wav2vec2-base (cached embeddings) "
        "instead of DRSN on mel-chroma",
        SSL_AUDIO,
        reference="paper Fig. 1 with a pretrained speech encoder (avsent variant)",
        base="mavsa-di",
    ),
}


@hookimpl
def register_audio_frontends(register):
    register.audio_frontend(
        "waveform",
        Waveform,
        config=WaveformConfig,
        description="16 kHz samples as one row [1, N], for encoders that take the waveform",
    )
    register.audio_frontend(
        "hf-speech-embeddings",
        HFSpeechEmbeddings,
        config=EmbeddingsConfig,
        description="hidden states of a frozen wav2vec2/HuBERT/WavLM, computed once and cached",
    )


@hookimpl
def register_audio_encoders(register):
    register.audio_encoder(
        "hf-speech",
        HFSpeech,
        config=HFSpeechConfig,
        description="wav2vec2/HuBERT/WavLM on the waveform, fine-tuned or frozen; layer mix",
    )
    register.audio_encoder(
        "hf-speech-cached",
        HFSpeechCached,
        config=CachedConfig,
        description="learnable layer mix + projection over cached hf-speech-embeddings",
    )


@hookimpl
def register_recipes(register):
    for name, recipe in RECIPES.items():
        register.recipe(name, recipe, description=recipe.description)
