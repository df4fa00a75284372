"""A run the data cannot feed is refused before preprocessing, and leaves no folder behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from command_helpers import squash

from avsent.cli import main


def _speech(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        sf.write(folder / name, 0.1 * np.sin(np.arange(4000, dtype=np.float32) / 5), 16000)
    return folder


def _unreadable(root: Path) -> Path:
    for label in ("happy", "sad"):
        (root / label).mkdir(parents=True)
        (root / label / "take.wav").write_bytes(b"RIFF not really a wave file")
    return root


def _fails(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return squash(out), squash(err)


def test_audio_visual_recipe_on_speech_is_refused_before_preprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # EmoDB names: speaker 03, text a01, emotion letter (L = boredom, which has no class)
    root = _speech(tmp_path / "emodb", ["03a01Fa.wav", "03a01Wa.wav", "03a02Lb.wav", "08a01Ta.wav"])
    out, err = _fails(
        capsys, "train", "mavsa-di", "--data", f"emodb:{root}",
        "--set", f"runs_dir={tmp_path / 'runs'}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert squash("1 boredom clip left out: no class") in out
    assert err.count("error:") == 1
    assert squash("no video stream") in err and squash("03a01Fa.wav: streams found: audio") in err
    assert squash("train `drsn-audio` instead") in err
    assert not (tmp_path / "runs").exists()  # no run folder
    assert not (tmp_path / "cache").exists()  # nothing was preprocessed


def test_labels_outside_the_paper_s_classes_are_named_before_preprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clips = _speech(tmp_path / "clips", ["a.wav", "b.wav", "c.wav"])
    manifest = clips / "list.csv"
    manifest.write_text("path,label\na.wav,happy\nb.wav,hapy\nc.wav,sad\n")
    out, _ = _fails(
        capsys, "train", "mavsa-di", "--data", manifest,
        "--set", f"runs_dir={tmp_path / 'runs'}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert squash("each trained as a class of its own: hapy; fix the list with") in out


def test_a_run_failing_before_its_first_epoch_removes_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _unreadable(tmp_path / "clips")
    run_dir = tmp_path / "runs" / "broken"
    out, err = _fails(
        capsys, "train", "drsn-audio", "--data", root, "--run-dir", run_dir,
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.workers=0",
    )  # fmt: skip
    assert squash(f"removed {run_dir}: the run failed before its first epoch") in out
    assert squash("preprocessing stopped") in err
    assert not run_dir.exists()


def test_a_folder_that_existed_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _unreadable(tmp_path / "clips")
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("the user's own file")
    out, err = _fails(
        capsys, "train", "drsn-audio", "--data", root, "--run-dir", run_dir,
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.workers=0",
    )  # fmt: skip
    assert "removed" not in out, err
    assert squash("preprocessing stopped") in err
    assert (run_dir / "notes.txt").is_file()
