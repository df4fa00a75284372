"""Front-end fingerprints and feature extraction of only the modalities a recipe uses."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile

from avsent.config import Choice
from avsent.data.features import FeatureExtractor, frontend_fingerprint
from avsent.errors import MediaError
from avsent.run_config import FacesConfig, RunConfig, TrainConfig, default_run_config


def _audio_only(**changes) -> RunConfig:
    return attrs.evolve(RunConfig(video=Choice("none")), **changes)


def test_fingerprint_ignores_model_and_training_settings() -> None:
    base = RunConfig()
    assert frontend_fingerprint(base) == frontend_fingerprint(RunConfig())
    for changed in (
        attrs.evolve(base, audio=Choice("resnet-plain")),
        attrs.evolve(base, fusion=Choice("concat"), head=Choice("linear")),
        attrs.evolve(base, train=TrainConfig(epochs=3, lr=0.1)),
        attrs.evolve(base, recipe="something-else", runs_dir="elsewhere"),
    ):
        assert frontend_fingerprint(changed) == frontend_fingerprint(base)


def test_fingerprint_follows_front_end_settings() -> None:
    base = RunConfig()
    changed = [
        attrs.evolve(base, faces=FacesConfig(crop_size=64)),
        attrs.evolve(base, faces=FacesConfig(landmarks=Choice("face-alignment"))),
        attrs.evolve(base, audio_frontend=Choice("another-frontend")),
        attrs.evolve(base, video=Choice("none")),  # fewer modalities stored
    ]
    prints = {frontend_fingerprint(c) for c in changed}
    assert len(prints) == len(changed) and frontend_fingerprint(base) not in prints


def test_fingerprint_ignores_settings_of_unused_modalities() -> None:
    audio_only = _audio_only()
    assert frontend_fingerprint(audio_only) == frontend_fingerprint(
        attrs.evolve(audio_only, faces=FacesConfig(crop_size=32, num_frames=4))
    )
    video_only = RunConfig(audio=Choice("none"))
    assert frontend_fingerprint(video_only) == frontend_fingerprint(
        attrs.evolve(video_only, audio_frontend=Choice("another-frontend"))
    )


def _tone(path: Path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sample_rate)
    return path


def test_without_a_face_embedding_the_keys_are_those_caches_already_hold() -> None:
    """faces.embedding = "none" (the default) leaves the key as it was before the field
    existed, so adding it recomputed no one's cache; change these only with FEATURE_FORMAT."""
    keys = [frontend_fingerprint(default_run_config(r)) for r in ("mavsa-di", "i3dd-visual")]
    assert keys == ["98b58366ad0e5d17", "d3551ba980cd6cba"]


def test_audio_only_recipe_reads_only_audio(tmp_path: Path) -> None:
    extractor = FeatureExtractor(_audio_only())
    assert extractor.detector is None
    features = extractor.extract(_tone(tmp_path / "tone.wav"))  # a WAV has no video at all
    assert features.video is None and features.geometry is None
    assert features.face_fraction is None
    assert features.audio.dtype == np.float32
    assert features.audio.shape[0] == extractor.frontend.spec.rows
    # 1 s at 22050 Hz, hop 512, centred frames
    assert features.audio.shape[1] == 1 + 22050 // 512


def test_unreadable_file_raises_media_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01 definitely not a video" * 10)
    with pytest.raises(MediaError) as info:
        FeatureExtractor(_audio_only()).extract(bad)
    assert info.value.path == bad


def test_real_clip_gives_audio_and_faces(shared_data: Path) -> None:
    clip = shared_data / "av" / "crema-d" / "1001_DFA_HAP_XX.flv"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    pytest.importorskip("avsent.faces.pipeline", reason="face pipeline not available yet")
    config = RunConfig(faces=FacesConfig(num_frames=4, crop_size=32))
    features = FeatureExtractor(config).extract(clip)
    assert features.audio.shape[0] == 140 and features.audio.shape[1] > 50  # ~2 s of audio
    assert features.video.shape == (4, 32, 32, 3) and features.video.dtype == np.uint8
    assert features.geometry is None  # landmarks "none"
    assert features.face_fraction > 0.5  # a frontal actor: found in most frames
