"""One test per hook: a plugin implementing it is seen by the part of avsent that uses it.

The meta-tests at the bottom keep it that way: every hook must have a ``test_hook_<name>``
here and must be documented with its signature in docs/plugins.md.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import attrs
import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import avsent.hookspecs as specs
from avsent.config import Choice, from_dict
from avsent.contracts import Band, Clip, FeatureSpec, Tokens
from avsent.hookspecs import hookimpl
from avsent.model import face_embedding_width, inputs_for
from avsent.recipe import Recipe
from avsent.registry import get_registry
from avsent.run_config import DataConfig, default_run_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


@pytest.fixture
def plugin():
    """Register a test plugin on the global registry; always unregister afterwards."""
    names = []

    def add(obj, name):
        registry = get_registry()
        assert registry.register_plugin(obj, name=name), registry.plugins[name].error
        names.append(name)
        return registry

    yield add
    for name in names:
        get_registry().unregister_plugin(name)


@attrs.define
class ScaleConfig:
    factor: float = 2.0


class Frontend:
    sample_rate = 8000

    @staticmethod
    def describe(config: ScaleConfig | None) -> FeatureSpec:
        return FeatureSpec(bands=(Band("level", 0, 3),), frames_per_second=10.0)

    def __init__(self, config: ScaleConfig) -> None:
        self.factor = config.factor
        self.spec = self.describe(config)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        return np.full((3, 4), self.factor, dtype=np.float32)


class MeanEncoder(nn.Module):
    def __init__(self, *, in_features: int) -> None:
        super().__init__()
        self.out_dim = in_features

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        return Tokens(x.transpose(1, 2), mask)


class FrameEncoder(nn.Module):
    def __init__(self, *, in_channels: int, frames: int, size: int) -> None:
        super().__init__()
        self.out_dim = in_channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        return Tokens(x.mean(dim=(3, 4)).transpose(1, 2), mask)


class Double(nn.Module):
    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, tokens: Tokens) -> Tokens:
        return Tokens(tokens.x * 2, tokens.mask)


class SumFusion(nn.Module):
    def __init__(self, *, audio_dim: int | None, video_dim: int | None) -> None:
        super().__init__()
        self.out_dim = audio_dim or video_dim

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        return sum(t.mean() for t in (audio, video) if t is not None)


class ZeroHead(nn.Module):
    def __init__(self, *, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.num_classes)


def test_hook_register_audio_frontends(plugin):
    class P:
        @hookimpl
        def register_audio_frontends(self, register):
            register.audio_frontend("scaled", Frontend, config=ScaleConfig)

    registry = plugin(P(), "t-frontend")
    comp = registry.get("audio_frontend", "scaled")
    frontend = comp.build(from_dict(ScaleConfig, {"factor": 3.0}))
    assert frontend(np.zeros(10)).max() == 3.0
    config = default_run_config("drsn-audio", {"audio_frontend.name": "scaled"})
    assert inputs_for(config).audio_features == 3  # the model's input size follows describe


def test_hook_register_audio_encoders(plugin):
    class P:
        @hookimpl
        def register_audio_encoders(self, register):
            register.audio_encoder("mean-audio", MeanEncoder)

    registry = plugin(P(), "t-audio")
    out = registry.get("audio_encoder", "mean-audio").build(in_features=5)(
        torch.ones(2, 5, 7), torch.ones(2, 7, dtype=torch.bool)
    )
    assert out.x.shape == (2, 7, 5)


def test_hook_register_video_encoders(plugin):
    class P:
        @hookimpl
        def register_video_encoders(self, register):
            register.video_encoder("frame-mean", FrameEncoder)

    registry = plugin(P(), "t-video")
    encoder = registry.get("video_encoder", "frame-mean").build(in_channels=3, frames=4, size=8)
    out = encoder(torch.ones(2, 3, 4, 8, 8), torch.ones(2, 4, dtype=torch.bool))
    assert out.x.shape == (2, 4, 3)


def test_hook_register_intra_modal_blocks(plugin):
    class P:
        @hookimpl
        def register_intra_modal_blocks(self, register):
            register.intra_modal("double", Double)

    registry = plugin(P(), "t-intra")
    block = registry.get("intra_modal", "double").build(dim=3)
    out = block(Tokens(torch.ones(1, 2, 3), torch.ones(1, 2, dtype=torch.bool)))
    assert torch.equal(out.x, torch.full((1, 2, 3), 2.0))


def test_hook_register_fusions(plugin):
    class P:
        @hookimpl
        def register_fusions(self, register):
            register.fusion("sum", SumFusion)

    registry = plugin(P(), "t-fusion")
    fusion = registry.get("fusion", "sum").build(audio_dim=3, video_dim=3)
    tokens = Tokens(torch.ones(2, 4, 3), torch.ones(2, 4, dtype=torch.bool))
    assert fusion(tokens, tokens).shape == (2, 3)


def test_hook_register_heads(plugin):
    class P:
        @hookimpl
        def register_heads(self, register):
            register.head("zero", ZeroHead)

    registry = plugin(P(), "t-head")
    head = registry.get("head", "zero").build(in_dim=3, num_classes=7)
    assert head(torch.ones(2, 3)).shape == (2, 7)


def test_hook_register_recipes(plugin):
    from avsent.run_config import default_run_config

    class P:
        @hookimpl
        def register_recipes(self, register):
            register.recipe(
                "head-swap", Recipe("test", {"head": {"name": "linear", "dropout": 0.5}})
            )

    plugin(P(), "t-recipe")
    config = default_run_config("head-swap")
    assert config.recipe == "head-swap"
    assert config.head.config.dropout == 0.5


def test_hook_register_datasets(plugin, tmp_path):
    @attrs.define
    class OneClipConfig:
        label: str = "happy"

    class OneClip:
        class_names = ("happy",)

        def __init__(self, config: OneClipConfig) -> None:
            self.label = config.label

        def clips(self) -> list[Clip]:
            return [Clip(tmp_path / "a.wav", self.label)]

    class P:
        @hookimpl
        def register_datasets(self, register):
            register.dataset("one-clip", OneClip, config=OneClipConfig)

    plugin(P(), "t-dataset")
    data = from_dict(DataConfig, {"dataset": {"name": "one-clip", "label": "sad"}})
    source = get_registry().get("dataset", "one-clip").build(data.dataset.config)
    assert source.clips()[0].label == "sad"


def test_hook_register_face_detectors(plugin):
    class Centre:
        def detect(self, image: np.ndarray) -> np.ndarray:
            h, w = image.shape[:2]
            return np.array([[w // 4, h // 4, w // 2, h // 2]])

    class P:
        @hookimpl
        def register_face_detectors(self, register):
            register.face_detector("centre", Centre)

    registry = plugin(P(), "t-detector")
    boxes = registry.get("face_detector", "centre").build().detect(np.zeros((40, 80, 3), np.uint8))
    assert boxes.tolist() == [[20, 10, 40, 20]]


def test_hook_register_landmark_backends(plugin):
    class Corners:
        def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
            return np.zeros((len(boxes), 68, 2), np.float32)

    class P:
        @hookimpl
        def register_landmark_backends(self, register):
            register.landmark_backend("corners", Corners)

    registry = plugin(P(), "t-landmarks")
    points = (
        registry.get("landmark_backend", "corners")
        .build()
        .landmarks(np.zeros((8, 8, 3), np.uint8), np.array([[0, 0, 4, 4]]))
    )
    assert points.shape == (1, 68, 2)


def test_hook_register_face_embeddings(plugin):
    class ChannelMeans:
        """A face embedding: each crop's mean per channel (the width asked of describe)."""

        @staticmethod
        def describe(config: None) -> int:
            return 3

        def __init__(self, *, in_channels: int) -> None:
            self.dim = in_channels

        def __call__(self, crops: np.ndarray) -> np.ndarray:
            return crops.mean(axis=(1, 2)).astype(np.float32)

    class P:
        @hookimpl
        def register_face_embeddings(self, register):
            register.face_embedding("channel-means", ChannelMeans)

    registry = plugin(P(), "t-embedding")
    embedding = registry.get("face_embedding", "channel-means").build(in_channels=3)
    crops = np.zeros((2, 4, 4, 3), np.uint8)
    crops[1, ..., 2] = 8
    assert embedding(crops).tolist() == [[0, 0, 0], [0, 0, 8]]
    config = default_run_config()
    config.faces.embedding = Choice("channel-means")
    assert face_embedding_width(config) == 3


def test_hook_register_commands(plugin):
    from avsent import cli as cli_module

    @click.command("hello-plugin")
    def hello() -> None:
        click.echo("hello from a plugin")

    class P:
        @hookimpl
        def register_commands(self, register):
            register.command(hello)

    plugin(P(), "t-command")
    try:
        cli_module._add_plugin_commands()
        result = CliRunner().invoke(cli_module.cli, ["hello-plugin"])
        assert result.exit_code == 0, result.output
        assert "hello from a plugin" in result.output
    finally:
        cli_module.cli.commands.pop("hello-plugin", None)


# -- meta-tests ------------------------------------------------------------------------


def _hooks() -> list[str]:
    return [name for name, fn in inspect.getmembers(specs) if name.startswith("register_")]


def test_every_hook_has_a_test():
    missing = [h for h in _hooks() if f"test_hook_{h}" not in globals()]
    assert not missing, f"hooks without a test_hook_<name> here: {missing}"


def test_every_hook_signature_is_documented():
    text = DOCS.read_text()
    missing = [h for h in _hooks() if not re.search(rf"{h}\(register\)", text)]
    assert not missing, f"docs/plugins.md lacks the signature of: {missing}"
