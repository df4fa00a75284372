"""The one builder of run data: duplicates by content, the training crop, parts and keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console
from tiny_training import make_tiny_config

from avsent.config import from_dict, merge, to_dict
from avsent.data.windows import crop_frames
from avsent.errors import DataError
from avsent.run_config import RunConfig
from avsent.training.data import prepare_data

LABELS = {"W": "angry", "F": "happy", "T": "sad", "N": "neutral"}


def _manifest(tmp_path: Path, shared_data: Path, copies: int) -> Path:
    """A manifest of 12 real EmoDB clips plus ``copies`` renamed copies of the first one."""
    source = sorted((shared_data / "speech" / "emodb").glob("03*.wav"))
    chosen = [p for p in source if p.name[5] in LABELS][:12]
    rows = ["path,label,speaker"]
    for p in chosen:
        rows.append(f"{p},{LABELS[p.name[5]]},{p.name[:2]}")
    for i in range(copies):
        copy = tmp_path / f"renamed-{i}.wav"
        shutil.copyfile(chosen[0], copy)
        rows.append(f"{copy},{LABELS[chosen[0].name[5]]},{chosen[0].name[:2]}")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _config(tmp_path: Path, manifest: Path, **data: object) -> RunConfig:
    """The tiny audio-only recipe reading ``manifest``, its cache under ``tmp_path``."""
    changes = {
        "data": {
            "dataset": {"name": "manifest", "path": str(manifest)},
            "cache_dir": str(tmp_path / "cache"),
            "workers": 0,
            "split": {"val_fraction": 0.25, "test_fraction": 0.25},
            **data,
        },
    }
    return from_dict(RunConfig, merge(to_dict(make_tiny_config()), changes, RunConfig))


def test_copies_by_content_stay_in_one_part_and_are_reported(tmp_path, shared_data) -> None:
    config = _config(tmp_path, _manifest(tmp_path, shared_data, copies=3))
    console = Console(record=True, width=400)
    data = prepare_data(config, tmp_path / "run", console=console, progress=False)
    text = console.export_text()
    assert "3 clips are byte-identical copies of another: " in text
    paths = [str(c.path) for c in data.clips]
    group = [0, *range(len(paths) - 3, len(paths))]  # the original and its three copies
    where = {i: part for part in ("train", "val", "test") for i in getattr(data.split, part)}
    assert len({where[i] for i in group}) == 1
    assert all(where.get(i) for i in range(len(paths)))  # every clip has a part


def test_copies_are_refused_when_asked(tmp_path, shared_data) -> None:
    config = _config(tmp_path, _manifest(tmp_path, shared_data, copies=2), duplicates="refuse")
    with pytest.raises(DataError, match=r"2 clips are byte-identical copies .*renamed-1\.wav"):
        prepare_data(config, tmp_path / "run", progress=False)


def test_training_part_is_cropped_and_the_others_whole(tmp_path, shared_data) -> None:
    config = _config(tmp_path, _manifest(tmp_path, shared_data, copies=0))
    data = prepare_data(config, tmp_path / "run", console=Console(quiet=True), progress=False)
    assert data.datasets["train"].max_audio_frames == crop_frames(config) == 431
    assert data.datasets["train"].train and not data.datasets["test"].train
    assert data.datasets["test"].max_audio_frames is None
    assert all(isinstance(key, str) and "/" in key for key, _ in data.datasets["val"].items)


def test_every_part_reads_its_clips_per_utterance_standardised(tmp_path) -> None:
    """``data.utterance_norm`` reaches the datasets of train and evaluate alike, and the
    cache under them keeps the front-end's dB."""
    import numpy as np
    import soundfile

    rows = ["path,label,speaker"]
    for i in range(16):
        t = np.arange(8000) / 16000
        wave = (0.1 + 0.02 * i) * np.sin(2 * np.pi * (150 + 30 * i) * t)
        path = tmp_path / f"tone{i}.wav"
        soundfile.write(path, wave.astype(np.float32), 16000)
        rows.append(f"{path},{list(LABELS.values())[i % 4]},s{i % 2}")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("\n".join(rows) + "\n")
    config = _config(tmp_path, manifest, utterance_norm=True)
    data = prepare_data(config, tmp_path / "run", console=Console(quiet=True), progress=False)
    assert len(data.datasets["train"]) and len(data.datasets["test"])
    for dataset in (d for d in data.datasets.values() if len(d)):
        audio = dataset.features(0).audio
        np.testing.assert_allclose(audio.mean(axis=1), 0.0, atol=1e-4)
        assert dataset.cache.get(dataset.items[0][0]).audio.min() < -20  # dB in the cache
