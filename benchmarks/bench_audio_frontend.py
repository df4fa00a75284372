"""Audio front-end cost on one core: avsent's mel-chroma against naive librosa, same run.

* Throughput, in seconds of audio per second of wall time, for a 3-s clip and a 60-s
  file (real speech: the first 3 s of a MEAD clip; 30 EmoDB utterances end to end).
  avsent: one STFT, filter banks built once, chroma tuning fixed at 0. Naive librosa:
  ``melspectrogram(y=...)`` + ``chroma_stft(y=...)`` — two STFTs, banks rebuilt per call
  and (librosa's default) tuning estimated per clip; "naive-tuning0" passes ``tuning=0``
  so the remaining gap is the shared STFT and cached banks alone.
* Decoding a 60-s 44.1 kHz WAV to 22.05 kHz mono: ``load_audio`` (PyAV) vs ``librosa.load``.
* Cold start: a fresh ``python`` process until the first clip's features, with librosa's
  numba cache empty (a fresh ``NUMBA_CACHE_DIR``: what a new install sees once) and warm.

    .venv/bin/pytest benchmarks/bench_audio_frontend.py -p no:cacheprovider --benchmark-only -o addopts=""

Each benchmark's ``extra_info`` holds the figure (``--benchmark-json out.json`` keeps it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import librosa
import numba
import numpy as np
import pytest
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from avsent.media.audio import load_audio
from avsent.plugins.audio_features import MelChroma

DATA = Path(
    os.environ.get(
        "AVSENT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
SR = 22050
ONE_CORE = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


@pytest.fixture(scope="module", autouse=True)
def one_core():
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    if not DATA.is_dir():
        pytest.skip(f"real media not found at {DATA}")
    emodb = sorted((DATA / "speech/emodb").glob("*.wav"))[:30]
    return {
        "3s": load_audio(DATA / "av/mead/M030_sad_3_001.mp4", SR, max_seconds=3.0),
        "60s": np.concatenate([load_audio(p, SR) for p in emodb]),
    }


def naive(y: np.ndarray, tuning: float | None = None) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
    chroma = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=512, tuning=tuning)
    return np.concatenate([librosa.power_to_db(mel, ref=1.0, top_db=None), chroma])


WAYS = {
    "avsent": MelChroma(),
    "naive": naive,
    "naive-tuning0": lambda y: naive(y, tuning=0.0),
}


@pytest.mark.parametrize("clip", ["3s", "60s"])
@pytest.mark.parametrize("way", list(WAYS))
def test_frontend_throughput(benchmark, clips, clip, way):
    y = clips[clip]
    fn = WAYS[way]
    fn(y)  # warm: filter banks, numba, FFT plans
    features = benchmark(fn, y)
    assert features.shape == (140, 1 + len(y) // 512)
    seconds = len(y) / SR
    benchmark.extra_info["audio_seconds"] = round(seconds, 2)
    benchmark.extra_info["audio_s_per_wall_s"] = round(seconds / benchmark.stats.stats.mean, 1)


@pytest.fixture(scope="module")
def long_wav(clips, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "speech_60s_44k.wav"
    sf.write(path, librosa.resample(clips["60s"], orig_sr=SR, target_sr=44100), 44100)
    return path


@pytest.mark.parametrize("way", ["avsent-pyav", "librosa-load"])
def test_decode_60s_wav(benchmark, long_wav, way):
    if way == "avsent-pyav":
        samples = benchmark(load_audio, long_wav, SR)
    else:
        samples = benchmark(lambda: librosa.load(long_wav, sr=SR)[0])
    assert abs(len(samples) - 60 * SR) < SR // 10
    benchmark.extra_info["audio_s_per_wall_s"] = round(60 / benchmark.stats.stats.mean, 1)


# -- cold start ----------------------------------------------------------------------------

FIRST_FEATURES = {
    "avsent": """
from avsent.media.audio import load_audio
from avsent.plugins.audio_features import MelChroma
frontend = MelChroma()
features = frontend(load_audio(PATH, frontend.sample_rate))
""",
    "naive": """
import librosa
y, sr = librosa.load(PATH, sr=22050)
mel = librosa.feature.melspectrogram(y=y, sr=sr)
chroma = librosa.feature.chroma_stft(y=y, sr=sr)
""",
}


def first_features(way: str, cache_dir: str) -> dict[str, float]:
    """Run one fresh interpreter; return its wall time to the first features."""
    path = sorted((DATA / "speech/emodb").glob("*.wav"))[0]
    code = (
        "import time, json; start = time.perf_counter()\n"
        f"PATH = {str(path)!r}\n" + FIRST_FEATURES[way] + "\n"
        "print(json.dumps({'in_process_s': time.perf_counter() - start}))"
    )
    env = {**os.environ, **ONE_CORE, "NUMBA_CACHE_DIR": cache_dir}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("numba_cache", ["cold", "warm"])
@pytest.mark.parametrize("way", list(FIRST_FEATURES))
def test_cold_start_to_first_features(benchmark, way, numba_cache, tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"real media not found at {DATA}")
    warm_dir = str(tmp_path / "warm")
    if numba_cache == "warm":
        first_features(way, warm_dir)  # compile once, as the first run after install does
    results: list[dict[str, float]] = []

    def setup():
        cache = warm_dir if numba_cache == "warm" else tempfile.mkdtemp(dir=tmp_path)
        return (way, cache), {}

    def run(way: str, cache: str) -> None:
        results.append(first_features(way, cache))

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info["in_process_s"] = [round(r["in_process_s"], 2) for r in results]
