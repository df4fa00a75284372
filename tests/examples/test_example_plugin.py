"""The example third-party plugin, installed for real, is listed and usable by config alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avsent.model import Batch, build_model, inputs_for
from avsent.registry import Registry, get_registry
from avsent.run_config import default_run_config

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "avsent-example-plugin"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """pip-install the example into a private folder (offline: no build isolation)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("plugin") / "src"
    shutil.copytree(PLUGIN_SRC, source)  # pip builds in place: keep the repository clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True,
    )  # fmt: skip
    return target


def test_plugins_json_lists_the_installed_example(installed_plugin: Path):
    env = {**os.environ, "PYTHONPATH": str(installed_plugin)}
    out = subprocess.run(
        [sys.executable, "-m", "avsent", "plugins", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["example_gru"]["components"] == {"audio_encoder": ["gru-audio"]}
    assert rows["example_gru"]["version"] == "0.1.0"
    assert rows["drsn"]["error"] is None


def test_shipped_recipe_runs_with_the_plugin_encoder_by_config(installed_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugin))
    import avsent.registry as registry_module

    monkeypatch.setattr(registry_module, "_registry", Registry())
    assert get_registry().get("audio_encoder", "gru-audio").plugin == "example_gru"
    config = default_run_config("drsn-audio", {"audio.name": "gru-audio", "audio.hidden": 16})
    model = build_model(config, inputs_for(config), ("a", "b", "c"))
    batch = Batch(
        audio=torch.randn(2, model.inputs.audio_features, 30),
        audio_mask=torch.ones(2, 30, dtype=torch.bool),
        targets=torch.tensor([0, 2]),
    )
    logits = model(batch).logits
    assert logits.shape == (2, 3)
    torch.nn.functional.cross_entropy(logits, batch.targets).backward()
    assert model.audio_encoder.gru.weight_ih_l0.grad is not None


def test_the_plugins_own_tests_pass_with_it_installed(installed_plugin: Path):
    """Its tests/ use avsent.testing as any plugin author would: run them as they would."""
    env = {**os.environ, "PYTHONPATH": str(installed_plugin), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN_SRC / "tests")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"\b2 (passed|xfailed)\b", out.stdout), out.stdout  # both ran
