"""Peak memory of scoring one long clip with ``drsn-audio``: flat in its length.

Each case runs in a fresh process and reports its peak resident set (``ru_maxrss``) minus
the resident set once the model is built: the memory scoring the clip added.

* ``evaluate`` — cached-size features ``[140, T]`` of a 1-, 10- and 60-minute clip through
  :func:`avsent.training.loop.evaluate` (what ``avsent evaluate`` and validation run), with
  the default windows (``train.max_audio_frames = "auto"``: 10 s, hop 5 s). Baseline in the
  same run: whole clips (``max_audio_frames = 0``, the behaviour before windows), 1 and 10
  minutes only — 60 minutes whole would take the machine down.
* ``predict`` — ``Pipeline.predict`` of a real WAV file (noise, 22.05 kHz) of 1, 10 and
  60 minutes, decoding and front-end included: a file longer than a window is decoded,
  featurised and scored a chunk at a time (:mod:`avsent.data.streaming`). Baseline in the
  same run: the whole-file path predict took before (``Pipeline.extract`` — the whole
  file decoded, one STFT of it — then its windows), 1 and 10 minutes only.

    .venv/bin/pytest benchmarks/bench_long_clips.py -p no:cacheprovider --benchmark-only -o addopts=""
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CASE = textwrap.dedent(
    """
    import json, resource, sys, tempfile
    from pathlib import Path
    import numpy as np, torch
    from avsent.data.features import ClipFeatures
    from avsent.model import build_model, inputs_for
    from avsent.run_config import default_run_config

    way, minutes, crop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    overrides = {"train.max_audio_frames": crop if crop == "auto" else int(crop),
                 "train.device": "cpu", "train.batch_size": 8}
    config = default_run_config("drsn-audio", overrides)
    model = build_model(config, inputs_for(config), ("a", "b", "c")).eval()
    seconds = minutes * 60
    wav = None
    if way.startswith("predict"):
        import soundfile
        wav = Path(tempfile.mkdtemp()) / "long.wav"
        rng = np.random.default_rng(0)
        with soundfile.SoundFile(wav, "w", 22050, 1, subtype="FLOAT") as fh:
            for _ in range(int(seconds // 10)):
                fh.write((0.1 * rng.standard_normal(220500)).astype(np.float32))
    else:  # the clip's features, as the cache would hand them over
        frames = int(seconds * 22050 / 512) + 1
        audio = np.random.default_rng(0).standard_normal((140, frames), dtype=np.float32)
        audio *= 10.0  # in place: no float64 copy raising the peak before it is read
        audio -= 30.0
    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = rss_mb()
    with torch.no_grad():
        if way == "predict":
            from avsent.pipeline import Pipeline
            Pipeline(model, config).predict(wav)
        elif way == "predict-whole":
            from avsent.pipeline import Pipeline
            pipe = Pipeline(model, config)
            pipe._classify([pipe.extract(wav)[0]])
        else:
            from avsent.data.loader import Sample
            from avsent.training.loop import evaluate
            class One(torch.utils.data.Dataset):
                def __len__(self): return 1
                def __getitem__(self, i): return Sample(ClipFeatures(audio=audio), 0)
            evaluate(model, One(), config=config)
    print(json.dumps({"peak_mb": rss_mb(), "added_mb": rss_mb() - before}))
    """
)


def measure(way: str, minutes: float, crop: str) -> dict[str, float]:
    """Run one case in a fresh process → its peak and added resident set in MB."""
    out = subprocess.run(
        [sys.executable, "-c", CASE, way, str(minutes), crop],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=1800,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("minutes", [1, 10, 60])
def test_evaluate_long_clip(benchmark, minutes: int) -> None:
    benchmark.group = f"evaluate one {minutes}-min clip, drsn-audio"
    windowed = benchmark.pedantic(measure, args=("evaluate", minutes, "auto"), rounds=1)
    figure = {"figure": "memory added by scoring (windows)", "unit": "MB"}
    if minutes <= 10:
        whole = measure("evaluate", minutes, "0")
        figure.update(
            value=windowed["added_mb"], baseline=whole["added_mb"], baseline_name="whole clip"
        )
    else:
        figure.update(value=windowed["added_mb"], baseline=None)
    benchmark.extra_info.update(figure, peak_mb=windowed["peak_mb"])


@pytest.mark.parametrize("minutes", [1, 10, 60])
def test_predict_long_file(benchmark, minutes: int) -> None:
    benchmark.group = f"predict one {minutes}-min WAV, drsn-audio"
    streamed = benchmark.pedantic(measure, args=("predict", minutes, "auto"), rounds=1)
    figure = {"figure": "memory added by predict (decode + front-end + windows)", "unit": "MB"}
    if minutes <= 10:
        whole = measure("predict-whole", minutes, "auto")
        figure.update(
            value=streamed["added_mb"],
            baseline=whole["added_mb"],
            baseline_name="whole file decoded and featurised",
        )
    else:
        figure.update(value=streamed["added_mb"], baseline=None)
    benchmark.extra_info.update(figure, peak_mb=streamed["peak_mb"])
