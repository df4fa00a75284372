"""An audio-visual model predicts on a file that lacks one modality, and says which it used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.pipeline import Pipeline
from avsent.run_config import default_run_config
from tiny_av import TINY_AV


@pytest.fixture(scope="module")
def av_pipeline() -> Pipeline:
    torch.manual_seed(0)
    config = default_run_config("mavsa-di", TINY_AV)
    model = build_model(config, inputs_for(config), EMOTIONS)
    return Pipeline(model, config)


def test_each_file_is_scored_from_the_modalities_it_has(av_pipeline, shared_data: Path):
    speech = sorted((shared_data / "speech" / "emodb").glob("*.wav"))[0]
    silent = shared_data / "face-video" / "woman2_noaudio.mp4"
    both = sorted((shared_data / "av" / "crema-d").glob("*.flv"))[0]
    broken = shared_data / "faces" / "dogs.jpg"  # neither a sound nor a face track
    results = av_pipeline.predict_many([speech, silent, both, broken], batch_size=4)
    assert [r.modalities for r in results] == ["audio", "video", "audio+video", None]
    for r in results[:3]:
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert results[3].error is not None and results[3].probabilities is None
    # batched with others or alone, a file's scores are the same (missing = all padding)
    alone = av_pipeline.predict_many([speech])[0]
    for name in EMOTIONS:
        assert alone.probabilities[name] == pytest.approx(results[0].probabilities[name], abs=1e-5)
