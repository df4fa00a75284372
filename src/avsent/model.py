"""Assembles a model from registered parts, exactly as the paper's Fig. 1.

audio features → audio encoder → intra-modal ┐
                                              ├→ fusion → head → logits
face crops     → video encoder → intra-modal ┘
(+ optional landmark geometry, projected and added to the video tokens)

The model holds the global input statistics as buffers, so they travel with every
checkpoint; :mod:`avsent.data.normalise` computes, sets and applies them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import attrs
import torch
from torch import nn

from avsent.config import NONE, Choice
from avsent.contracts import FeatureSpec, Tokens
from avsent.data.normalise import standardise, standardise_video
from avsent.errors import ConfigError
from avsent.registry import get_registry
from avsent.run_config import MODEL_SLOTS


@attrs.frozen
class InputSpec:
    """What the front-ends produce, so encoders know their input sizes
    (:func:`inputs_for` derives it from a run config)."""

    audio_features: int
    video_channels: int
    video_frames: int
    video_size: int
    geometry_dim: int = 0
    #: the video is cached face embeddings (channels = their width, size 1), not pixels
    video_embedded: bool = False


@attrs.define
class Batch:
    """A collated batch. Absent modalities are ``None``.

    audio [B, F, T] float, audio_mask [B, T] bool; video [B, C, T, H, W] float in [0, 1],
    video_mask [B, T] bool; geometry [B, T, G] float; targets [B] long.
    """

    audio: torch.Tensor | None = None
    audio_mask: torch.Tensor | None = None
    video: torch.Tensor | None = None
    video_mask: torch.Tensor | None = None
    geometry: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            **{
                f.name: (t.to(device, non_blocking=True) if t is not None else None)
                for f in attrs.fields(Batch)
                for t in [getattr(self, f.name)]
            }
        )

    def pin_memory(self) -> Batch:
        """Page-locked copies; the DataLoader calls this when ``pin_memory=True`` (GPU runs)."""
        return Batch(
            **{
                f.name: (t.pin_memory() if t is not None else None)
                for f in attrs.fields(Batch)
                for t in [getattr(self, f.name)]
            }
        )

    def without(self, modality: str) -> Batch:
        """This batch as if its files had no ``modality`` ("audio" or "video"): what
        ``avsent evaluate --drop`` scores, and what a file without that stream gives."""
        if modality == "audio":
            return attrs.evolve(self, audio=None, audio_mask=None)
        if modality == "video":
            return attrs.evolve(self, video=None, video_mask=None, geometry=None)
        raise ValueError(f"modality must be 'audio' or 'video', got {modality!r}")

    @property
    def size(self) -> int:
        for t in (self.audio, self.video, self.targets):
            if t is not None:
                return t.shape[0]
        raise ValueError("empty batch")


@dataclasses.dataclass(frozen=True)  # not attrs: torch.compile traces dataclasses
class ModelOutput:
    logits: torch.Tensor  #: [B, K]
    fused: torch.Tensor  #: [B, D] the head's input (for metric losses and embeddings)
    #: per branch with an auxiliary head (:meth:`AVModel.add_branch_heads`): its own logits
    #: [B, K] and which clips had that modality [B]; empty without auxiliary heads
    branches: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)


Part = nn.Module | str | Choice | tuple[str, dict[str, Any]] | None


class AVModel(nn.Module):
    """Audio-visual classifier built from parts; either modality may be absent."""

    def __init__(
        self,
        *,
        audio_encoder: nn.Module | None,
        video_encoder: nn.Module | None,
        audio_intra: nn.Module | None,
        video_intra: nn.Module | None,
        fusion: nn.Module,
        head: nn.Module,
        class_names: tuple[str, ...],
        inputs: InputSpec,
    ) -> None:
        super().__init__()
        if audio_encoder is None and video_encoder is None:
            raise ConfigError("audio", "a model needs at least one of audio and video")
        self.audio_encoder = audio_encoder
        self.video_encoder = video_encoder
        self.audio_intra = audio_intra or nn.Identity()
        self.video_intra = video_intra or nn.Identity()
        self.fusion = fusion
        self.head = head
        self.class_names = tuple(class_names)
        self.inputs = inputs
        #: token widths the fusion receives (None: the model has no such branch)
        self.audio_dim = _out_dim(audio_intra, audio_encoder)
        self.video_dim = _out_dim(video_intra, video_encoder)
        # global statistics (avsent.data.normalise.set_model_stats fills them)
        self.register_buffer("audio_mean", torch.zeros(inputs.audio_features))
        self.register_buffer("audio_std", torch.ones(inputs.audio_features))
        self.geometry_proj = None
        if video_encoder is not None and inputs.geometry_dim > 0:
            self.geometry_proj = nn.Linear(inputs.geometry_dim, video_encoder.out_dim)
            self.register_buffer("geometry_mean", torch.zeros(inputs.geometry_dim))
            self.register_buffer("geometry_std", torch.ones(inputs.geometry_dim))
        self.branch_heads = nn.ModuleDict()

    def add_branch_heads(self) -> None:
        """A linear classifier on each branch's pooled tokens (what the fusion receives),
        trained by ``train.aux_loss`` so that neither branch is left under-trained behind
        the other (unimodal auxiliary losses; Wang et al., CVPR 2020)."""
        for name, dim in (("audio", self.audio_dim), ("video", self.video_dim)):
            if dim is not None:
                self.branch_heads[name] = nn.Linear(dim, len(self.class_names))

    @property
    def uses_audio(self) -> bool:
        return self.audio_encoder is not None

    @property
    def uses_video(self) -> bool:
        return self.video_encoder is not None

    def encode_audio(self, batch: Batch) -> Tokens:
        x = standardise(batch.audio, self.audio_mean, self.audio_std, axis=1)
        return self.audio_intra(self.audio_encoder(x, batch.audio_mask))

    def encode_video(self, batch: Batch) -> Tokens:
        video = batch.video if self.inputs.video_embedded else standardise_video(batch.video)
        tokens = self.video_encoder(video, batch.video_mask)
        if self.geometry_proj is not None and batch.geometry is not None:
            geometry = standardise(batch.geometry, self.geometry_mean, self.geometry_std, axis=2)
            g = self.geometry_proj(geometry).transpose(1, 2)  # [B, D, T]
            g = nn.functional.adaptive_avg_pool1d(g, tokens.x.shape[1]).transpose(1, 2)
            tokens = Tokens(tokens.x + g, tokens.mask)
        return self.video_intra(tokens)

    def branch_tokens(self, batch: Batch) -> tuple[Tokens | None, Tokens | None]:
        """The (audio, video) tokens the fusion receives (``None`` for a branch the model
        lacks). A branch whose input the batch lacks (a file without a video stream,
        ``evaluate --drop video``) gives tokens with no real step, as a clip whose modality
        was dropped in training does; fusions treat both alike."""
        audio = video = None
        if self.uses_audio:
            has = batch.audio is not None
            audio = self.encode_audio(batch) if has else _absent(batch, self.audio_dim)
        if self.uses_video:
            has = batch.video is not None
            video = self.encode_video(batch) if has else _absent(batch, self.video_dim)
        return audio, video

    def forward(self, batch: Batch) -> ModelOutput:
        """Logits of the batch (see :meth:`branch_tokens` for a missing modality)."""
        audio, video = self.branch_tokens(batch)
        fused = self.fusion(audio, video)
        branches = {}
        for name, tokens in (("audio", audio), ("video", video)):
            if tokens is not None and name in self.branch_heads:
                branches[name] = (self.branch_heads[name](tokens.mean()), tokens.mask.any(1))
        return ModelOutput(self.head(fused), fused, branches)


def _absent(batch: Batch, dim: int) -> Tokens:
    """One padded token per clip: a modality with no real step."""
    like = next(t for t in (batch.audio, batch.video, batch.targets) if t is not None)
    size = like.shape[0]
    x = torch.zeros(size, 1, dim, device=like.device)
    return Tokens(x, torch.zeros(size, 1, dtype=torch.bool, device=like.device))


def _resolve(kind: str, part: Part, **dims: Any) -> nn.Module | None:
    """A part given as a module, a name, (name, params), or a Choice → a built module."""
    if part is None:
        return None
    if isinstance(part, nn.Module):
        return part
    if isinstance(part, str):
        part = Choice(part)
    elif isinstance(part, tuple):
        from avsent.config import from_dict

        name, params = part
        component = get_registry().get(kind, name)
        config = from_dict(component.config, params, kind) if component.config else None
        part = Choice(name, config)
    if part.name == NONE:
        return None
    return get_registry().get(kind, part.name).build(part.config, **dims)


def compose(
    *,
    audio: Part = None,
    video: Part = None,
    audio_intra: Part = None,
    video_intra: Part = None,
    fusion: Part = "concat",
    head: Part = "linear",
    class_names: tuple[str, ...] | None = None,
    inputs: InputSpec | None = None,
) -> AVModel:
    """Build a model from explicitly named parts, ``(name, params)`` pairs, or modules.

    Without ``inputs``, the sizes are those of the paper's front-ends (recipe ``mavsa-di``,
    landmark geometry included), so its parts named here build that recipe's model.

    >>> model = compose(audio="drsn", fusion="passthrough", class_names=("calm", "angry"))
    >>> model.uses_audio, model.uses_video, model.class_names
    (True, False, ('calm', 'angry'))
    """
    from avsent.labels import EMOTIONS

    if inputs is None:
        from avsent.run_config import default_run_config

        inputs = inputs_for(default_run_config("mavsa-di"))
    class_names = tuple(class_names or EMOTIONS)
    audio_encoder = _resolve("audio_encoder", audio, in_features=inputs.audio_features)
    video_encoder = _resolve(
        "video_encoder",
        video,
        in_channels=inputs.video_channels,
        frames=inputs.video_frames,
        size=inputs.video_size,
    )
    audio_intra_m = (
        _resolve("intra_modal", audio_intra, dim=audio_encoder.out_dim) if audio_encoder else None
    )
    video_intra_m = (
        _resolve("intra_modal", video_intra, dim=video_encoder.out_dim) if video_encoder else None
    )
    audio_dim = _out_dim(audio_intra_m, audio_encoder)
    video_dim = _out_dim(video_intra_m, video_encoder)
    fusion_m = _resolve("fusion", fusion, audio_dim=audio_dim, video_dim=video_dim)
    head_m = _resolve("head", head, in_dim=fusion_m.out_dim, num_classes=len(class_names))
    return AVModel(
        audio_encoder=audio_encoder,
        video_encoder=video_encoder,
        audio_intra=audio_intra_m,
        video_intra=video_intra_m,
        fusion=fusion_m,
        head=head_m,
        class_names=class_names,
        inputs=inputs,
    )


def _out_dim(intra: nn.Module | None, encoder: nn.Module | None) -> int | None:
    if encoder is None:
        return None
    return getattr(intra, "out_dim", encoder.out_dim)


def build_model(config: Any, inputs: InputSpec, class_names: tuple[str, ...]) -> AVModel:
    """The model a :class:`~avsent.run_config.RunConfig` describes."""
    parts = {slot: getattr(config, slot) for slot in MODEL_SLOTS}
    model = compose(**parts, class_names=class_names, inputs=inputs)
    if config.train.aux_loss > 0:
        model.add_branch_heads()
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def audio_feature_spec(config: Any) -> FeatureSpec:
    """What the configured audio front-end's rows mean, asked of the front-end itself."""
    choice = config.audio_frontend
    component = get_registry().get("audio_frontend", choice.name)
    describe = getattr(component.obj, "describe", None)
    if describe is None:
        raise ConfigError(
            "audio_frontend.name",
            f"front-end {choice.name!r} (plugin {component.plugin!r}) has no describe(config) "
            "saying what its rows are; see avsent.contracts.FeatureSpec",
        )
    return describe(choice.config)


def face_embedding_width(config: Any) -> int:
    """The width of the configured face embedding's vectors, asked of its factory."""
    choice = config.faces.embedding
    component = get_registry().get("face_embedding", choice.name)
    describe = getattr(component.obj, "describe", None)
    if describe is None:
        raise ConfigError(
            "faces.embedding.name",
            f"face embedding {choice.name!r} (plugin {component.plugin!r}) has no "
            "describe(config) giving its width; see avsent.contracts.FaceEmbedding",
        )
    return int(describe(choice.config))


def inputs_for(config: Any) -> InputSpec:
    """The input sizes a run config's front-ends produce (with a face embedding, the video
    is one 1×1 map per frame whose channels are the embedding)."""
    from avsent.faces.geometry import GEOMETRY_DIM

    faces = config.faces
    embedded = faces.embedding.name != NONE
    return InputSpec(
        audio_features=audio_feature_spec(config).rows,
        video_channels=face_embedding_width(config) if embedded else 1 if faces.grayscale else 3,
        video_frames=faces.num_frames,
        video_size=1 if embedded else faces.crop_size,
        geometry_dim=0 if faces.landmarks.name == NONE else GEOMETRY_DIM,
        video_embedded=embedded,
    )
