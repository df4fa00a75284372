"""The "face-alignment" landmark backend: offline message, and the real weight-loading path.

The FAN weights cannot be downloaded here, so the test builds face-alignment's own FAN
network with random weights and saves it where face-alignment looks (a temporary torch hub
cache): loading then goes through exactly the code a user's downloaded file would.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from avsent.contracts import LandmarkBackend
from avsent.errors import WeightsUnavailableError
from avsent.plugins.face_alignment_landmarks import (
    FaceAlignmentConfig,
    FaceAlignmentLandmarks,
    weights_path,
)
from avsent.registry import get_registry


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def generated_weights(torch_home):
    from face_alignment.models import FAN

    torch.manual_seed(0)
    path, _ = weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(FAN(4).state_dict(), path)
    return path


def test_offline_error_names_the_file_and_folder(torch_home):
    with pytest.raises(WeightsUnavailableError) as err:
        FaceAlignmentLandmarks(FaceAlignmentConfig())
    message = str(err.value)
    assert "2DFAN4-11f355bf06.pth.tar" in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert 'faces.landmarks = "none"' in message


def test_damaged_weights_file_is_reported(torch_home):
    path, _ = weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        FaceAlignmentLandmarks(FaceAlignmentConfig())


def test_loads_weights_from_the_torch_hub_cache(generated_weights):
    backend = get_registry().get("landmark_backend", "face-alignment").build()
    assert isinstance(backend, LandmarkBackend)
    state = torch.load(generated_weights, weights_only=True)
    loaded = backend.model.face_alignment_net.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert backend.landmarks(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 4))).shape == (0, 68, 2)


@pytest.mark.slow  # face-alignment's first call compiles numba code (~10-20 s CPU)
def test_landmarks_on_a_real_face(generated_weights, shared_data):
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces/obama.jpg")), cv2.COLOR_BGR2RGB)
    box = np.array([[340, 93, 300, 300]])
    points = FaceAlignmentLandmarks(FaceAlignmentConfig()).landmarks(image, box)
    assert points.shape == (1, 68, 2) and points.dtype == np.float32
    assert np.isfinite(points).all()
