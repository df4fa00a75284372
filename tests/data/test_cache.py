"""The feature cache: content keys, atomic writes, damaged entries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs
import numpy as np
import pytest
from safetensors.numpy import save

from avsent.contracts import Band, FeatureSpec
from avsent.data.cache import MISSING, EntrySpec, FeatureCache, cache_dir, content_hash
from avsent.data.features import ClipFeatures
from avsent.errors import CacheLocationError


def _features(seed: int = 0) -> ClipFeatures:
    rng = np.random.default_rng(seed)
    return ClipFeatures(
        audio=rng.standard_normal((6, 11)).astype(np.float32),
        video=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
        geometry=rng.standard_normal((4, 5)).astype(np.float32),
        face_fraction=0.75,
    )


def test_round_trip_keeps_every_array(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    stored = _features()
    cache.put("fp/abc", stored)
    loaded = cache.get("fp/abc")
    assert loaded is not None and "fp/abc" in cache
    np.testing.assert_array_equal(loaded.audio, stored.audio)
    np.testing.assert_array_equal(loaded.video, stored.video)
    np.testing.assert_array_equal(loaded.geometry, stored.geometry)
    assert loaded.face_fraction == 0.75
    assert cache.path_of("fp/abc") == tmp_path / "fp" / "abc.safetensors"


def test_audio_only_entry_has_no_video(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/a", ClipFeatures(audio=np.ones((3, 4), np.float32)))
    loaded = cache.get("fp/a")
    assert loaded.video is None and loaded.geometry is None and loaded.face_fraction is None


def test_missing_entry_is_none(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    assert cache.get("fp/nothing") is None
    assert "fp/nothing" not in cache


def test_key_follows_content_not_name(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    cache = FeatureCache(tmp_path / "cache")
    assert cache.key_for(a, "fp") == cache.key_for(b, "fp")
    assert cache.key_for(a, "fp") == f"fp/{content_hash(a)}"
    assert cache.key_for(a, "fp") != cache.key_for(a, "other")
    b.write_bytes(b"other bytes")
    assert cache.key_for(a, "fp") != cache.key_for(b, "fp")


def test_hash_memo_is_reused_and_invalidated_by_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"x" * 3000)
    first = FeatureCache(tmp_path / "cache")
    key = first.key_for(clip, "fp")
    first.save_index()

    calls: list[Path] = []
    import avsent.data.cache as cache_module

    real = cache_module.content_hash
    monkeypatch.setattr(cache_module, "content_hash", lambda p: calls.append(p) or real(p))
    second = FeatureCache(tmp_path / "cache")
    assert second.key_for(clip, "fp") == key
    assert calls == []  # memo hit: same path, size and mtime

    clip.write_bytes(b"y" * 3001)
    assert second.key_for(clip, "fp") != key
    assert len(calls) == 1


def test_failed_write_leaves_no_entry_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path)

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # as if the run were killed between write and rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.put("fp/abc", _features())
    monkeypatch.undo()
    assert cache.get("fp/abc") is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_overwrite_replaces_whole_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/abc", _features(0))
    cache.put("fp/abc", ClipFeatures(audio=np.zeros((2, 2), np.float32)))
    loaded = cache.get("fp/abc")
    assert loaded.video is None and loaded.audio.shape == (2, 2)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated, e.g. a disk filled up
        lambda data: b"not a safetensors file",
        lambda data: b"",
    ],
)
def test_damaged_entry_reads_as_missing_and_is_removed(tmp_path: Path, damage) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/abc", _features())
    path = cache.path_of("fp/abc")
    path.write_bytes(damage(path.read_bytes()))
    assert cache.get("fp/abc") is None
    assert not path.exists()


def test_damaged_entry_is_not_counted_as_present(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/abc", _features())
    path = cache.path_of("fp/abc")
    path.write_bytes(path.read_bytes()[:100])
    assert "fp/abc" not in cache


def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/abc", _features())
    stale = tmp_path / "fp" / ".def.safetensors.x1.tmp"
    fresh = tmp_path / "fp" / ".ghi.safetensors.x2.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (0, 0))
    assert cache.remove_stale_temporaries() == 1
    assert not stale.exists() and fresh.exists() and cache.get("fp/abc") is not None


# -- content checks: checksum and shapes ---------------------------------------------------


def test_flipped_tensor_bytes_are_never_served(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/abc", _features())
    path = cache.path_of("fp/abc")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of the video crops: the header still parses
    path.write_bytes(bytes(data))
    assert cache.problem("fp/abc") == "checksum mismatch"
    assert not path.exists()  # deleted, so the next preprocessing recomputes it
    assert cache.get("fp/abc") is None and cache.problem("fp/abc") == MISSING


def test_tampered_face_fraction_fails_the_checksum(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/abc", _features())
    path = cache.path_of("fp/abc")
    path.write_bytes(path.read_bytes().replace(b'"0.75"', b'"0.25"'))
    assert cache.get("fp/abc") is None


def test_an_entry_without_checksum_is_refused(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    path = cache.path_of("fp/old")
    path.parent.mkdir(parents=True)
    path.write_bytes(save({"audio": np.ones((3, 4), np.float32)}, metadata={"arrays": "audio"}))
    assert "no checksum" in cache.problem("fp/old")


@pytest.mark.parametrize(
    ("features", "problem"),
    [
        (ClipFeatures(audio=np.ones((3, 4), np.float64)), "audio is float64"),
        (ClipFeatures(video=np.zeros((4, 8, 6, 3), np.uint8)), "video crops are (4, 8, 6, 3)"),
        (ClipFeatures(video=np.zeros((4, 8, 8, 2), np.uint8)), "expected [T, S, S, 1 or 3]"),
        (ClipFeatures(video=np.zeros((4, 8, 8, 3), np.float32)), "video embeddings are"),
        (ClipFeatures(video=np.zeros((4, 1, 1, 8), np.float64)), "expected 4-D uint8 or float32"),
        (
            ClipFeatures(
                video=np.zeros((4, 8, 8, 3), np.uint8), geometry=np.zeros((3, 5), np.float32)
            ),
            "geometry has 3 frames for 4 video frames",
        ),
    ],
)
def test_inconsistent_shapes_are_refused(
    tmp_path: Path, features: ClipFeatures, problem: str
) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/x", features)  # a valid checksum: only the shape check can catch these
    assert problem in cache.problem("fp/x")
    assert cache.get("fp/x") is None


#: the facts of :func:`_features`: 6 audio rows in two bands, 4 frames of 8×8 RGB, G = 5
SPEC = EntrySpec(
    audio=FeatureSpec((Band("level", 0, 4, frequency=True, db=True), Band("x", 4, 6)), 50.0),
    video_size=8,
    video_channels=3,
    geometry_dim=5,
    video_frames=4,
)


def test_an_entry_must_match_the_front_end_spec(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    spec = SPEC
    cache.put("fp/ok", _features())
    assert cache.problem("fp/ok", spec) is None
    cache.put("fp/rows", ClipFeatures(audio=np.ones((20, 89), np.float32)))
    assert "the front-end gives size 6" in cache.problem("fp/rows", attrs.evolve(spec, video_size=None))  # fmt: skip
    cache.put("fp/novideo", ClipFeatures(audio=np.ones((6, 9), np.float32)))
    assert cache.problem("fp/novideo", spec) == "video is missing"
    cache.put("fp/gray", attrs.evolve(_features(), video=np.zeros((4, 8, 8, 1), np.uint8)))
    assert "1 channels, expected 3" in cache.problem("fp/gray", spec)


def test_the_spec_an_entry_was_written_for_is_stored_and_checked(tmp_path: Path) -> None:
    """An entry extracted for other features (a front-end whose layout or frame rate changed
    under the same settings) is refused and deleted, so preprocessing recomputes it."""
    cache = FeatureCache(tmp_path)
    cache.put("fp/a", _features(), SPEC)
    assert cache.problem("fp/a", SPEC) is None
    assert cache.get("fp/a") is not None
    faster = attrs.evolve(SPEC, audio=attrs.evolve(SPEC.audio, frames_per_second=100.0))
    assert cache.problem("fp/a", faster) == (
        "written for other features: audio.frames_per_second 50.0 stored, 100.0 now"
    )
    assert not cache.path_of("fp/a").exists()  # deleted: it is recomputed

    cache.put("fp/b", _features(), SPEC)
    relaid = attrs.evolve(
        SPEC, audio=FeatureSpec((Band("level", 0, 4, db=True), Band("x", 4, 6)), 50.0)
    )
    assert "audio.bands level 0:4 frequency dB, x 4:6 stored, level 0:4 dB, x 4:6 now" in (
        cache.problem("fp/b", relaid)
    )
    cache.put("fp/c", _features(), SPEC)
    more_frames = attrs.evolve(SPEC, video_frames=16)
    assert cache.problem("fp/c", more_frames) == (
        "written for other features: video.frames 4 stored, 16 now"
    )


def test_an_entry_without_a_stored_spec_is_read_as_before(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("fp/old", _features())  # as entries were written before specs were stored
    assert cache.problem("fp/old", SPEC) is None
    assert cache.problem("fp/old", attrs.evolve(SPEC, video_frames=16)) is None  # unknown


def test_the_stored_spec_is_covered_by_the_checksum(tmp_path: Path) -> None:
    from safetensors import safe_open

    cache = FeatureCache(tmp_path)
    cache.put("fp/a", _features(), SPEC)
    path = cache.path_of("fp/a")
    with safe_open(str(path), framework="numpy") as fh:
        metadata = fh.metadata()
        names = fh.keys()  # a safetensors handle is not iterable
        arrays = {name: fh.get_tensor(name) for name in names}
    forged = attrs.evolve(SPEC, video_frames=16)
    metadata["spec"] = json.dumps(forged.facts(), sort_keys=True)
    path.write_bytes(save(arrays, metadata=metadata))
    assert cache.problem("fp/a", forged) == "checksum mismatch"


def test_the_spec_of_a_config_comes_from_its_front_ends() -> None:
    from avsent.faces.geometry import GEOMETRY_DIM
    from avsent.run_config import default_run_config

    facts = EntrySpec.of(default_run_config("mavsa-di", {"faces.num_frames": 6})).facts()
    assert facts == {
        "audio": {
            "bands": ["mel 0:128 frequency dB", "chroma 128:140"],
            "frames_per_second": 22050 / 512,
        },
        "video": {"frames": 6, "size": 32, "channels": 3, "geometry": GEOMETRY_DIM},
    }
    audio_only = EntrySpec.of(default_run_config("drsn-audio", {"audio_frontend.n_mels": 64}))
    assert audio_only.facts()["video"] is None and audio_only.audio_rows == 76


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_cache_dir_that_is_a_file_is_a_clear_error(tmp_path: Path, below: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CacheLocationError, match="must be a folder, but .*file is a file"):
        FeatureCache(tmp_path / "file" / below)


def test_the_cache_folder_is_the_setting_else_the_environment_else_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("AVSENT_CACHE_DIR", raising=False)
    assert cache_dir("") == tmp_path / "home" / ".cache" / "avsent" / "features"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert FeatureCache("").root == tmp_path / "xdg" / "avsent" / "features"
    monkeypatch.setenv("AVSENT_CACHE_DIR", str(tmp_path / "env"))
    assert FeatureCache("").root == tmp_path / "env"
    assert cache_dir("~/mine") == tmp_path / "home" / "mine"  # data.cache_dir wins


def test_a_claim_held_by_a_live_process_is_waited_for(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import threading

    cache = FeatureCache(tmp_path)
    key = "fp/abc"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        claim = cache.path_of(key).with_suffix(".claim")
        claim.parent.mkdir(parents=True)
        claim.write_text(f"{socket.gethostname()} {holder.pid}\n")
        got: list[bool] = []

        def second_run() -> None:
            with cache.claim(key, poll_s=0.02) as ours:
                got.append(ours)

        waiter = threading.Thread(target=second_run)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and not got  # waits while the holder works
        cache.put(key, _features())  # the holder stores the entry
        waiter.join(5)
        assert got == [False]  # nothing left to extract
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holders_claim_is_taken_over_and_released(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    cache = FeatureCache(tmp_path)
    key = "fp/abc"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = cache.path_of(key).with_suffix(".claim")
    claim.parent.mkdir(parents=True)
    claim.write_text(f"{socket.gethostname()} {dead.pid}\n")  # a run killed mid-clip
    with cache.claim(key, poll_s=0.02) as ours:
        assert ours
        assert claim.read_text().split() == [socket.gethostname(), str(os.getpid())]
    assert not claim.exists()
