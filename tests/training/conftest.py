"""Fixtures for the training tests: a tiny run config and in-memory feature datasets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tiny_training import FeatureList, make_tiny_config

from avsent.run_config import RunConfig


@pytest.fixture
def tiny_config() -> Callable[..., RunConfig]:
    """``tiny_config(epochs=2, ...)``: the tiny run config with ``train`` fields set."""
    return make_tiny_config


@pytest.fixture
def feature_sets() -> tuple[FeatureList, FeatureList]:
    return FeatureList(24, seed=0), FeatureList(9, seed=1)
