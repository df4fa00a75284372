"""Preprocessing: parallel extraction into the cache, skipping, failures, sharding."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from avsent.config import Choice
from avsent.contracts import Clip
from avsent.data.cache import FeatureCache
from avsent.data.features import frontend_fingerprint
from avsent.data.preprocess import preprocess, select_shard
from avsent.errors import CacheWriteError, ConfigError, TooManyFailuresError
from avsent.run_config import FacesConfig, RunConfig

AUDIO_ONLY = RunConfig(video=Choice("none"))
#: never stops for the share of failed clips (tests of single failures)
TOLERANT = attrs.evolve(AUDIO_ONLY, data=attrs.evolve(AUDIO_ONLY.data, max_failed_fraction=1.0))


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
        TOLERANT,
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
    preprocess([corrupt], TOLERANT, workers=0, progress=True, cache=FeatureCache(tmp_path / "c"))
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


# -- environment failures stop the run; clips' own problems do not ------------------------

#: ``python SCRIPT avsent-args...``: the CLI, with the extractor patched at import, so the
#: forkserver workers (which import this script as their main module) get the patch too
FAILING_CLI = """
import errno, os, sys, time
import avsent.data.cache as cache_module
from avsent.data.features import FeatureExtractor

mode, _, target = os.environ.get("AVSENT_TEST_FAIL", "").partition(":")
real_extract, real_write = FeatureExtractor.extract, cache_module.atomic_write_bytes

def extract(self, path):
    if mode == "kill" and path.name == target:
        os.kill(os.getpid(), 9)  # as the OOM killer would
    time.sleep(float(os.environ.get("AVSENT_TEST_DELAY", "0")))
    return real_extract(self, path)

def write(path, data):
    if mode == "enospc" and str(path).endswith(".safetensors"):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real_write(path, data)

FeatureExtractor.extract = extract
cache_module.atomic_write_bytes = write
if __name__ == "__main__":
    from avsent.cli import main
    main(sys.argv[1:])
"""


def _squash(text: str) -> str:
    """Without whitespace: rich wraps long error lines to the terminal's width."""
    return "".join(text.split())


def _labelled_tones(root: Path, per_class: int) -> Path:
    for label in ("happy", "sad"):
        _tones(root / label, per_class)
    return root


def _cli(
    tmp_path: Path, data: Path, *, fail: str = "", delay: float = 0.0, workers: int = 2
) -> subprocess.CompletedProcess:
    script = tmp_path / "failing_cli.py"
    script.write_text(FAILING_CLI)
    env = {**os.environ, "AVSENT_TEST_FAIL": fail, "AVSENT_TEST_DELAY": str(delay)}
    args = ["preprocess", "drsn-audio", "--data", str(data), "--workers", str(workers)]
    args += ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
    return subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_killed_worker_stops_the_run_and_names_its_clip(tmp_path: Path) -> None:
    data = _labelled_tones(tmp_path / "data", 4)
    killed = _cli(tmp_path, data, fail="kill:tone2.wav")
    assert killed.returncode == 2, killed.stderr
    err = _squash(killed.stderr)
    assert _squash("a preprocessing worker died") in err and "tone2.wav" in err
    assert "Traceback" not in err and "skipped" not in err
    again = _cli(tmp_path, data)  # nothing lost: the run completes when run again
    assert again.returncode == 0, again.stderr
    assert "8 clips ready, 0 failed" in again.stdout


def test_a_full_disk_stops_the_run_in_a_worker(tmp_path: Path) -> None:
    # the stub raises ENOSPC at the cache write: the error must pickle back from the worker
    data = _labelled_tones(tmp_path / "data", 2)
    full = _cli(tmp_path, data, fail="enospc")
    assert full.returncode == 2, full.stderr
    err = _squash(full.stderr)
    assert _squash("no space left on the disk") in err and "whilecaching" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "no space left on the disk"), (errno.EACCES, "permission denied")],
)
def test_a_failed_cache_write_stops_the_run_through_the_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    code: int,
    reason: str,
) -> None:
    import avsent.data.cache as cache_module
    from avsent.cli import main

    data = _labelled_tones(tmp_path / "data", 3)
    real = cache_module.atomic_write_bytes
    entries: list[Path] = []

    def write(path: Path, payload: bytes) -> None:
        if Path(path).suffix == ".safetensors" and len(entries) == 2:
            raise OSError(code, os.strerror(code), str(path))
        entries.append(Path(path))
        real(path, payload)

    monkeypatch.setattr(cache_module, "atomic_write_bytes", write)
    args = ["preprocess", "drsn-audio", "--data", str(data), "--workers", "0"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--set", f"data.cache_dir={tmp_path / 'cache'}"])
    assert exit_info.value.code == 2
    err = _squash(capsys.readouterr().err)
    assert _squash(reason) in err and "cannotwritethefeaturecache" in err
    assert "Traceback" not in err
    # stopped at the first failure; what was written before it is kept
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2


def test_the_click_runner_sees_the_run_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import avsent.data.cache as cache_module
    from avsent.cli import cli

    def full(path: Path, payload: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cache_module, "atomic_write_bytes", full)
    data = _labelled_tones(tmp_path / "data", 1)
    args = ["preprocess", "drsn-audio", "--data", str(data), "--workers", "0"]
    result = CliRunner().invoke(cli, [*args, "--set", f"data.cache_dir={tmp_path / 'cache'}"])
    assert isinstance(result.exception, CacheWriteError) and result.exit_code != 0


def test_losing_too_many_clips_stops_the_run_with_the_list(tmp_path: Path) -> None:
    good = _tones(tmp_path, 1)
    bad = [_corrupt(tmp_path / f"bad{i}.wav") for i in range(2)]
    with pytest.raises(TooManyFailuresError) as info:
        preprocess([*good, *bad], AUDIO_ONLY, workers=0, progress=False, cache=FeatureCache(tmp_path / "c"))  # fmt: skip
    message = str(info.value)
    assert "2 of 3 clips failed" in message and "data.max_failed_fraction = 0.5" in message
    assert "bad0.wav" in message and "bad1.wav" in message
    result = preprocess([*good, *bad], TOLERANT, workers=0, progress=False, cache=FeatureCache(tmp_path / "c"))  # fmt: skip
    assert len(result.failed) == 2  # within the configured share: skipped, not raised


def test_losing_every_clip_of_a_class_stops_the_run(tmp_path: Path) -> None:
    happy = [Clip(p, "happy") for p in _tones(tmp_path / "media", 3)]
    sad = Clip(_corrupt(tmp_path / "sad.wav"), "sad")
    with pytest.raises(TooManyFailuresError, match="every clip of class 'sad' failed"):
        preprocess([*happy, sad], TOLERANT, workers=0, progress=False, cache=FeatureCache(tmp_path / "c"))  # fmt: skip


def test_max_failed_fraction_is_validated() -> None:
    with pytest.raises(ValueError, match="max_failed_fraction"):
        attrs.evolve(AUDIO_ONLY.data, max_failed_fraction=1.5)


# -- the cache is checked on content ------------------------------------------------------


def _entry_of(result, path: Path, cache: FeatureCache) -> Path:
    return cache.path_of(result.features[path])


def test_flipped_cache_bytes_are_recomputed_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = _tones(tmp_path / "media", 3)
    cache = FeatureCache(tmp_path / "cache")
    first = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    entry = _entry_of(first, paths[1], cache)
    good = cache.get(first.features[paths[1]]).audio
    data = bytearray(entry.read_bytes())
    assert len(data) - 8 - int.from_bytes(data[:8], "little") >= 4096  # 4 KB of tensor bytes
    data[-4096:] = bytes(b ^ 0xFF for b in data[-4096:])
    entry.write_bytes(bytes(data))
    capsys.readouterr()

    again = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    err = capsys.readouterr().err
    assert f"cache entry for {paths[1]} cannot be used (checksum mismatch); recomputing" in err
    assert again.computed == 1 and again.reused == 2
    # recomputed, same features (compared as arrays: safetensors orders its header keys freely)
    np.testing.assert_array_equal(cache.get(again.features[paths[1]]).audio, good)
    third = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    assert third.computed == 0 and "cannot be used" not in capsys.readouterr().err  # once


def test_a_wrong_shape_entry_is_recomputed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from avsent.data.features import ClipFeatures

    paths = _tones(tmp_path / "media", 2)
    cache = FeatureCache(tmp_path / "cache")
    first = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    key = first.features[paths[0]]
    rows = cache.get(key).audio.shape[0]
    cache.put(key, ClipFeatures(audio=np.zeros((20, 89), np.float32)))  # a valid checksum
    capsys.readouterr()
    again = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    err = capsys.readouterr().err
    assert f"cache entry for {paths[0]} cannot be used" in err and f"size {rows}" in err
    assert again.computed == 1 and cache.get(key).audio.shape[0] == rows


def test_an_entry_written_for_other_features_is_recomputed_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from avsent.data.cache import EntrySpec

    paths = _tones(tmp_path / "media", 2)
    cache = FeatureCache(tmp_path / "cache")
    first = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    key = first.features[paths[0]]
    spec = EntrySpec.of(AUDIO_ONLY)
    other = attrs.evolve(spec, audio=attrs.evolve(spec.audio, frames_per_second=50.0))
    features = cache.get(key)
    assert "written for other features" in cache.problem(key, other)  # extraction stored it
    cache.put(key, features, other)  # as an older front-end version would have
    capsys.readouterr()
    again = preprocess(paths, AUDIO_ONLY, workers=0, progress=False, cache=cache)
    err = capsys.readouterr().err
    assert (
        f"cache entry for {paths[0]} cannot be used (written for other features: "
        "audio.frames_per_second 50.0 stored, 43.06640625 now); recomputing"
    ) in err
    assert again.computed == 1 and cache.problem(key, spec) is None


# -- workers end with their parent ---------------------------------------------------------

SLOW_RUN = """
import sys, time
from pathlib import Path
from avsent.data.features import FeatureExtractor

real = FeatureExtractor.extract
def slow(self, path):  # defined at import: the workers import this script as their main
    time.sleep(0.5)
    return real(self, path)
FeatureExtractor.extract = slow

if __name__ == "__main__":
    from avsent.config import Choice
    from avsent.data.cache import FeatureCache
    from avsent.data.preprocess import preprocess
    from avsent.run_config import RunConfig

    paths = sorted(Path(sys.argv[1]).glob("*.wav"))
    preprocess(paths, RunConfig(video=Choice("none")), workers=2, progress=False,
               cache=FeatureCache(sys.argv[2]))
"""


def _descendants(pid: int) -> set[int]:
    """Living descendants of ``pid`` (Linux /proc; zombies count as gone)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    _tones(tmp_path / "media", 40)
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN)
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "media"), str(root)])
    helpers: set[int] = set()
    try:
        for _ in range(1200):  # up to ~2 minutes for the workers to start extracting
            helpers = _descendants(proc.pid)
            if proc.poll() is not None or (list(root.glob("*/*.safetensors")) and helpers):
                break
            time.sleep(0.1)
        helpers = _descendants(proc.pid)  # forkserver, resource tracker, 2 workers
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs in the parent
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and len(helpers) >= 3  # killed mid-run
    for _ in range(300):  # bounded wait for them to notice, not a timing assertion
        if not any(_alive(pid) for pid in helpers):
            break
        time.sleep(0.1)
    left = {pid for pid in helpers if _alive(pid)}
    for pid in left:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived their killed parent: {sorted(left)}"
    assert len(list(root.glob("*/*.safetensors"))) < 40


def test_two_runs_on_one_cache_extract_each_clip_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from avsent.data import preprocess as preprocessing
    from avsent.data.features import FeatureExtractor

    clips = _tones(tmp_path / "clips", 6)
    extracted: list[str] = []
    real_extract = FeatureExtractor.extract

    def slow_extract(self, path):  # slow enough for the two runs to meet on each clip
        extracted.append(Path(path).name)
        time.sleep(0.1)
        return real_extract(self, path)

    monkeypatch.setattr(preprocessing.FeatureExtractor, "extract", slow_extract)
    config = attrs.evolve(
        AUDIO_ONLY, data=attrs.evolve(AUDIO_ONLY.data, cache_dir=str(tmp_path / "c"))
    )
    results = []

    def run(order: list[Path]) -> None:
        results.append(preprocess(order, config, workers=0, progress=False))

    runs = [threading.Thread(target=run, args=(o,)) for o in (clips, clips[::-1])]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(60)
    assert sorted(extracted) == sorted(p.name for p in clips)  # each once, not twice
    assert all(len(r.features) == len(clips) and not r.failed for r in results)
