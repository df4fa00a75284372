"""Every registered component — shipped or a third party's — keeps its kind's contract.

The checks live in :mod:`avsent.testing` (plugin authors run the same ones); this file runs
them over the registry, and shows with broken toy components that they can fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import avsent
from avsent.contracts import Band, Clip, FeatureSpec, Tokens
from avsent.errors import ConfigError
from avsent.layers.masks import masked_mean, zero_padding
from avsent.registry import Component
from avsent.testing import (
    CHECKED_KINDS,
    ComponentUnavailable,
    ContractError,
    check_component,
    check_dataset,
)

#: every kind with a check; a dataset needs a folder to read (see the folder test below)
MODEL_KINDS = tuple(kind for kind in CHECKED_KINDS if kind != "dataset")

#: a tiny 3-D DenseNet: the defaults are DenseNet-121 sized (seconds per clip on a CPU),
#: and the padding rules do not depend on the depth
TINY_DENSENET = {"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8}

#: smaller configs for shipped components whose defaults are slow on a CPU
OVERRIDES: dict[tuple[str, str], dict] = {
    ("video_encoder", "i3dd"): TINY_DENSENET,
    ("video_encoder", "densenet3d"): TINY_DENSENET,
}

#: shipped components that break the contract today: (the rule they break, why). Each is
#: a strict xfail that must fail with that rule, so a fix (or a new failure) shows.
KNOWN_BROKEN: dict[tuple[str, str], tuple[str, str]] = {
    ("audio_encoder", "cmavf-2dcnn"): (
        "alone must equal its tokens in a batch",
        "floor-mode MaxPool2d drops a clip's last odd steps when alone, while in a batch "
        "downsample_mask marks the token covering them (and padding) real",
    ),
    ("audio_encoder", "vcan-afm"): (
        "alone must equal its tokens in a batch",
        "floor-mode MaxPool2d drops a clip's last odd steps when alone, while in a batch "
        "downsample_mask marks the token covering them (and padding) real",
    ),
    ("video_encoder", "cmavf-3dcnn"): (
        "alone must equal its tokens in a batch",
        "padded frames are zeroed only at the input: after BatchNorm they are non-zero, "
        "reach real frames through the next 3-D convs, and channel attention pools over them",
    ),
    ("fusion", "vcan-select"): (
        "must not depend on what padded tokens hold",
        "a clip whose video is all padding keeps no frame, and masked_softmax then weights "
        "every (padded) frame uniformly, so their content reaches the output",
    ),
}


def _registered() -> list:
    cases = []
    for kind in MODEL_KINDS:
        for component in avsent.list_components(kind):
            key = (kind, component.name)
            marks = ()
            if key in KNOWN_BROKEN:
                marks = pytest.mark.xfail(
                    strict=True, raises=ContractError, reason=KNOWN_BROKEN[key][1]
                )
            cases.append(pytest.param(component, id=f"{kind}:{component.name}", marks=marks))
    return cases


@pytest.mark.parametrize("component", _registered())
def test_registered_component_keeps_its_contract(component: Component):
    key = (component.kind, component.name)
    try:
        check_component(component, OVERRIDES.get(key))
    except ComponentUnavailable as exc:
        pytest.skip(str(exc))
    except ContractError as exc:
        if key in KNOWN_BROKEN and KNOWN_BROKEN[key][0] not in str(exc):
            pytest.fail(f"fails another rule than the known one: {exc}")  # not an xfail
        raise


# -- the checks can fail --------------------------------------------------------------------


class BiasedEncoder(nn.Module):
    """Padded tokens come out as the bias, not zero."""

    def __init__(self, *, in_features: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, 8)
        self.out_dim = 8

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        return Tokens(self.proj(x.transpose(1, 2)), mask)


class LeakyMeanEncoder(BiasedEncoder):
    """Adds the mean over *all* steps, padding's content included, to every token."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        tokens = self.proj(x.transpose(1, 2))
        return Tokens(zero_padding(tokens + tokens.mean(dim=1, keepdim=True), mask), mask)


class PaddedLengthEncoder(BiasedEncoder):
    """Padding is zeroed, but the mean divides by the padded length: batch-dependent."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tokens:
        tokens = zero_padding(self.proj(x.transpose(1, 2)), mask)
        return Tokens(zero_padding(tokens + tokens.mean(dim=1, keepdim=True), mask), mask)


class AudioOnlyFusion(nn.Module):
    """Takes both modalities and uses only the audio."""

    def __init__(self, *, audio_dim: int | None, video_dim: int | None) -> None:
        super().__init__()
        if audio_dim is None:
            raise ConfigError("fusion", "'audio-only' needs audio")
        self.proj = nn.Linear(audio_dim, 4)
        self.out_dim = 4

    def forward(self, audio: Tokens | None, video: Tokens | None) -> torch.Tensor:
        return self.proj(masked_mean(audio.x, audio.mask))


def _toy(kind: str, name: str, factory: type, rule: str):
    return pytest.param(Component(kind, name, factory, "toy"), rule, id=name)


@pytest.mark.parametrize(
    ("component", "rule"),
    [
        _toy("audio_encoder", "biased", BiasedEncoder, "padded tokens must be zero"),
        _toy(
            "audio_encoder",
            "leaky-mean",
            LeakyMeanEncoder,
            "real tokens must not depend on what padded input steps hold",
        ),
        _toy(
            "audio_encoder",
            "padded-length",
            PaddedLengthEncoder,
            "a clip's tokens alone must equal its tokens in a batch",
        ),
        _toy(
            "fusion",
            "audio-only",
            AudioOnlyFusion,
            "audio+video: the output must depend on the real video tokens",
        ),
    ],
)
def test_a_broken_component_fails_with_the_rule_it_breaks(component: Component, rule: str):
    with pytest.raises(
        ContractError, match=rf"{component.kind} '{component.name}'.*{re.escape(rule)}"
    ):
        check_component(component)


class MisdescribedFrontend:
    """Says it makes 4 rows, makes 3."""

    sample_rate = 8000

    @staticmethod
    def describe(config: object) -> object:
        return type("Spec", (), {"rows": 4})()

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        return np.zeros((3, len(samples) // 80 + 1), np.float32)


def test_a_frontend_whose_describe_disagrees_fails():
    component = Component("audio_frontend", "misdescribed", MisdescribedFrontend, "toy")
    with pytest.raises(ContractError, match=r"describe\(config\) must say what"):
        check_component(component)


def _folder(root: Path, labels: dict[str, int]) -> Path:
    for label, count in labels.items():
        (root / label).mkdir(parents=True)
        for i in range(count):
            sf.write(root / label / f"s{i}_{label}.wav", np.zeros(800, np.float32), 8000)
    return root


def test_a_folder_dataset_keeps_the_dataset_contract(tmp_path: Path):
    root = _folder(tmp_path / "data", {"angry": 2, "happy": 2})
    check_dataset("folder", {"root": str(root)})


class UnlistedLabelSource:
    """A clip labelled with a class the source does not list."""

    def __init__(self) -> None:
        self.class_names = ("angry",)

    def clips(self) -> list[Clip]:
        return [Clip(Path("a.wav"), "angry"), Clip(Path("b.wav"), "bored")]


def test_a_dataset_with_an_unlisted_label_fails():
    component = Component("dataset", "unlisted", UnlistedLabelSource, "toy")
    with pytest.raises(ContractError, match=r"label must be one of class_names.*bored"):
        check_dataset(component)


# -- the shared data types check their own shapes -------------------------------------------


def test_tokens_reject_a_mask_that_does_not_match_x_and_name_both_shapes():
    with pytest.raises(ValueError, match=r"got \(2, 3, 4\) and \(2, 4\)"):
        Tokens(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got \(2, 3\) and \(2, 3\)"):
        Tokens(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))


def test_a_feature_spec_needs_bands_that_tile_the_rows_in_order():
    with pytest.raises(ValueError, match="^a feature map needs at least one band$"):
        FeatureSpec((), 100.0)
    gap = (Band("mel", 0, 4), Band("chroma", 5, 7))
    empty = (Band("mel", 0, 4), Band("chroma", 4, 4))
    for bands in (gap, empty):
        with pytest.raises(ValueError, match=r"tile the rows in order; .*chroma.* after row 4"):
            FeatureSpec(bands, 100.0)
    assert FeatureSpec((Band("mel", 0, 4), Band("chroma", 4, 7)), 100.0).rows == 7


def test_first_band_with_the_asked_properties():
    plain, freq, level, both = (
        Band("energy", 0, 1),
        Band("chroma", 1, 3, frequency=True),
        Band("rms", 3, 4, db=True),
        Band("mel", 4, 8, frequency=True, db=True),
    )
    spec = FeatureSpec((plain, freq, level, both), 100.0)
    assert spec.first() is plain
    assert spec.first(frequency=True) is freq
    assert spec.first(db=True) is level
    assert spec.first(frequency=True, db=True) is both
    no_frequency = FeatureSpec((plain, Band("rms", 1, 2, db=True)), 100.0)
    assert no_frequency.first(frequency=True) is None
