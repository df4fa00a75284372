"""Preprocessing: parallel extraction into the cache, skipping, failures, sharding."""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile

from avsent.config import Choice
from avsent.contracts import Clip
from avsent.data.cache import FeatureCache
from avsent.data.features import frontend_fingerprint
from avsent.data.preprocess import preprocess, select_shard
from avsent.errors import ConfigError
from avsent.run_config import FacesConfig, RunConfig

AUDIO_ONLY = RunConfig(video=Choice("none"))


def _tones(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        t = np.arange(8000) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)
        paths.append(folder / f"tone{i}.wav")
        soundfile.write(paths[-1], wave.astype(np.float32), 16000)
    return paths


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\x1a\x45\xdf\xa3 truncated garbage " * 20)
    return path


def _real_clips(shared_data: Path, count: int) -> list[Path]:
    clips = sorted((shared_data / "av" / "crema-d").glob("*.flv"))[:count]
    if len(clips) < count:
        pytest.skip("CREMA-D clips not found in the shared data")
    return clips


def test_real_clips_in_workers_with_a_corrupt_file(shared_data: Path, tmp_path: Path) -> None:
    clips = [*_real_clips(shared_data, 2), _corrupt(tmp_path / "corrupt.mp4")]
    cache = FeatureCache(tmp_path / "cache")
    result = preprocess(clips, AUDIO_ONLY, workers=2, progress=False, cache=cache)
    assert set(result.features) == set(clips[:2])
    assert [p for p, _ in result.failed] == [clips[2]]
    assert result.failed[0][1]  # a reason, not an empty string
    assert result.computed == 2 and result.reused == 0
    assert result.seconds > 0 and result.busy_seconds > 0
    for key in result.features.values():
        assert cache.get(key).audio.shape[0] == 140
    assert not list(cache.root.rglob("*.tmp"))


def test_second_run_reuses_the_cache(tmp_path: Path) -> None:
    clips = [Clip(p, "happy") for p in _tones(tmp_path / "media", 3)]
    cache = FeatureCache(tmp_path / "cache")
    first = preprocess(clips, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    again = preprocess(clips, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    assert first.computed == 3 and again.computed == 0 and again.reused == 3
    assert again.features == first.features and again.seconds == 0.0


def test_only_changed_clips_and_settings_are_recomputed(tmp_path: Path) -> None:
    paths = _tones(tmp_path / "media", 3)
    cache = FeatureCache(tmp_path / "cache")
    first = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)

    model_change = attrs.evolve(AUDIO_ONLY, fusion=Choice("concat"), audio=Choice("other"))
    assert preprocess(paths, model_change, workers=0, progress=False, cache=cache).computed == 0

    soundfile.write(paths[1], np.zeros(8000, np.float32) + 0.2 * np.hanning(8000), 16000)
    edited = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    assert edited.computed == 1 and edited.features[paths[0]] == first.features[paths[0]]
    assert edited.features[paths[1]] != first.features[paths[1]]

    from avsent.plugins.audio_features import MelChromaConfig

    smaller = attrs.evolve(
        AUDIO_ONLY, audio_frontend=Choice("mel-chroma", MelChromaConfig(n_mels=32))
    )
    assert frontend_fingerprint(smaller) != frontend_fingerprint(AUDIO_ONLY)
    result = preprocess(paths, smaller, workers=0, progress=False, cache=cache)
    assert result.computed == 3
    assert cache.get(result.features[paths[0]]).audio.shape[0] == 32 + 12


def test_missing_and_undecodable_files_are_reported_not_raised(tmp_path: Path) -> None:
    good = _tones(tmp_path, 1)[0]
    missing = tmp_path / "missing.wav"
    corrupt = _corrupt(tmp_path / "bad.wav")
    result = preprocess(
        [good, missing, corrupt],
        AUDIO_ONLY,
        workers=0,
        progress=False,
        cache=FeatureCache(tmp_path / "c"),
    )
    assert list(result.features) == [good]
    reasons = dict(result.failed)
    assert set(reasons) == {missing, corrupt}
    assert "cannot read" in reasons[missing]


def test_progress_output_lists_failures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corrupt = _corrupt(tmp_path / "bad.wav")
    preprocess([corrupt], AUDIO_ONLY, workers=0, progress=True, cache=FeatureCache(tmp_path / "c"))
    err = capsys.readouterr().err
    assert "1 failed" in err and "bad.wav" in err


def test_shards_partition_the_corpus(tmp_path: Path) -> None:
    paths = [tmp_path / "corpus" / f"spk{i % 4}" / f"clip{i}.mp4" for i in range(40)]
    shards = [select_shard(paths, (i, 3)) for i in range(3)]
    assert sorted((p for s in shards for p in s), key=str) == sorted(paths, key=str)
    assert all(shards)  # 40 clips over 3 shards: none empty
    # another machine with the same tree under another root picks the same clips
    moved = [tmp_path / "elsewhere" / p.relative_to(tmp_path / "corpus") for p in paths]
    names = [[p.relative_to(tmp_path / "corpus") for p in s] for s in shards]
    assert [
        [p.relative_to(tmp_path / "elsewhere") for p in select_shard(moved, (i, 3))]
        for i in range(3)
    ] == names
    assert select_shard(paths, None) == paths
    with pytest.raises(ConfigError):
        select_shard(paths, (3, 3))


def test_preprocess_only_touches_its_shard(tmp_path: Path) -> None:
    paths = _tones(tmp_path / "media", 6)
    cache = FeatureCache(tmp_path / "cache")
    done = [
        preprocess(paths, AUDIO_ONLY, workers=0, shard=(i, 2), progress=False, cache=cache)
        for i in range(2)
    ]
    assert set(done[0].features).isdisjoint(done[1].features)
    assert set(done[0].features) | set(done[1].features) == set(paths)


def test_video_recipe_extracts_faces(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("avsent.faces.pipeline", reason="face pipeline not available yet")
    clips = _real_clips(shared_data, 2)
    config = RunConfig(faces=FacesConfig(num_frames=4, crop_size=32))
    copy = shutil.copy(clips[0], tmp_path / "copy.flv")  # same content → same entry
    cache = FeatureCache(tmp_path / "cache")
    result = preprocess([*clips, copy], config, workers=0, progress=False, cache=cache)
    assert result.failed == [] and result.features[Path(copy)] == result.features[clips[0]]
    features = cache.get(result.features[clips[1]])
    assert features.video.shape == (4, 32, 32, 3) and features.audio.shape[0] == 140
    assert features.face_fraction > 0.5


def test_identical_files_are_extracted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avsent.data.features import FeatureExtractor

    original = _tones(tmp_path, 1)[0]
    twin = Path(shutil.copy(original, tmp_path / "twin.wav"))
    calls: list[Path] = []
    real = FeatureExtractor.extract
    monkeypatch.setattr(FeatureExtractor, "extract", lambda s, p: calls.append(p) or real(s, p))
    result = preprocess(
        [original, twin], AUDIO_ONLY, workers=0, progress=False, cache=FeatureCache(tmp_path / "c")
    )
    assert calls == [original]
    assert list(result.features) == [original, twin]
    assert result.features[original] == result.features[twin]


KILLED_RUN = """
import sys, time
from pathlib import Path
from avsent.config import Choice
from avsent.data.cache import FeatureCache
from avsent.data.features import FeatureExtractor
from avsent.data.preprocess import preprocess
from avsent.run_config import RunConfig

real = FeatureExtractor.extract
def slow(self, path):  # widen the window in which the kill lands
    time.sleep(0.05)
    return real(self, path)
FeatureExtractor.extract = slow
paths = sorted(Path(sys.argv[1]).glob("*.wav"))
preprocess(paths, RunConfig(video=Choice("none")), workers=0, progress=False,
           cache=FeatureCache(sys.argv[2]))
"""


def test_a_killed_run_leaves_only_whole_entries(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    paths = _tones(tmp_path / "media", 40)
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "media"), str(root)])
    try:
        while proc.poll() is None and len(list(root.glob("*/*.safetensors"))) < 3:
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs in the child
        proc.wait()
    cache = FeatureCache(root)
    entries = list(root.glob("*/*.safetensors"))
    assert entries
    fingerprint = entries[0].parent.name
    for entry in entries:
        assert cache.get(f"{fingerprint}/{entry.stem}") is not None  # never half-written
    resumed = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    assert resumed.reused == len(entries) and resumed.computed == len(paths) - len(entries)
    assert resumed.computed > 0  # the kill landed mid-run
