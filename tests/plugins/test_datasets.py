"""Dataset plugins on the real corpora in ../shared/data and on trees with real-style names."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsent.config import from_dict
from avsent.data.manifest import DatasetProblems
from avsent.errors import ConfigError
from avsent.labels import EMOTIONS
from avsent.registry import get_registry


def build(name: str, **fields):
    component = get_registry().get("dataset", name)
    return component.build(from_dict(component.config, fields))


def touch(root: Path, *names: str) -> None:
    """Empty files: the corpus datasets read names only, never content."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_all_datasets_are_registered() -> None:
    names = {c.name for c in get_registry().list("dataset")}
    assert names >= {"synthetic", "folder", "manifest", "ravdess", "crema-d", "emodb", "mead"}


def test_synthetic_through_the_registry(tmp_path: Path) -> None:
    source = build(
        "synthetic", root=str(tmp_path), clips_per_class=1, speakers=1, seconds=0.4, size=96
    )
    assert source.class_names == EMOTIONS
    clips = source.clips()
    assert [c.label for c in clips] == list(EMOTIONS)
    assert all(c.path.suffix == ".mp4" and c.path.is_file() for c in clips)


# -- real corpora ----------------------------------------------------------------------------


def test_emodb_real_files(shared_data: Path) -> None:
    root = shared_data / "speech" / "emodb"
    source = build("emodb", root=str(root))
    clips = source.clips()
    assert len(list(root.glob("*.wav"))) == 408
    assert len(clips) == 408 - 58  # the 58 boredom (L) takes have no class
    assert source.class_names == ("sad", "angry", "fear", "happy", "disgusted", "neutral")
    assert {c.speaker for c in clips} == {"03", "08", "09", "10", "11", "12", "13", "14"}
    assert len(source.skipped) == 58
    assert all("boredom" in s.reason for s in source.skipped)
    by_name = {c.path.name: c.label for c in clips}
    assert by_name["03a01Fa.wav"] == "happy"
    assert by_name["03a01Wa.wav"] == "angry"
    assert by_name["03a02Ta.wav"] == "sad"


def test_emodb_boredom_mapped_or_kept_by_config(shared_data: Path) -> None:
    root = str(shared_data / "speech" / "emodb")
    mapped = build("emodb", root=root, label_map={"boredom": "neutral"})
    assert len(mapped.clips()) == 408
    kept = build("emodb", root=root, include_unmapped=True)
    assert kept.class_names[-1] == "boredom"
    assert sum(c.label == "boredom" for c in kept.clips()) == 58


@pytest.mark.parametrize(("folder", "speaker"), [("av", "1001"), ("speech", "1002")])
def test_crema_d_real_files(shared_data: Path, folder: str, speaker: str) -> None:
    source = build("crema-d", root=str(shared_data / folder / "crema-d"))
    clips = source.clips()
    assert len(clips) == 6
    assert {c.speaker for c in clips} == {speaker}
    assert source.class_names == ("sad", "angry", "fear", "happy", "disgusted", "neutral")
    assert {c.path.name.split("_")[2]: c.label for c in clips} == {
        "ANG": "angry",
        "DIS": "disgusted",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    }


def test_mead_face_videos(shared_data: Path) -> None:
    source = build("mead", root=str(shared_data / "face-video" / "mead"))
    clips = source.clips()
    assert len(clips) == 16  # 19 files, 3 of them contempt
    assert source.class_names == EMOTIONS
    assert {c.speaker for c in clips} == {"M030", "W009"}
    assert {s.path.name for s in source.skipped} == {
        "M030_crop_contempt.mp4",
        "M030_front_contempt_level3_001.mp4",
        "W009_front_contempt_level3_001.mp4",
    }
    labels = {c.path.name: c.label for c in clips}
    assert labels["W009_front_surprised_level3_001.mp4"] == "surprise"
    assert labels["M030_crop_fear.mp4"] == "fear"


def test_mead_av_clips_and_view_filter(shared_data: Path) -> None:
    root = str(shared_data / "av" / "mead")
    clips = build("mead", root=root).clips()
    assert sorted((c.path.name, c.label) for c in clips) == [
        ("M030_crop_disgusted.mp4", "disgusted"),
        ("M030_crop_sad.mp4", "sad"),
        ("M030_crop_surprised.mp4", "surprise"),
        ("M030_sad_3_001.mp4", "sad"),  # no view in the name: kept
    ]
    front_only = build("mead", root=root, views=["front"]).clips()
    assert [c.path.name for c in front_only] == ["M030_sad_3_001.mp4"]


# -- trees with real-style names -----------------------------------------------------------


def ravdess_tree(root: Path) -> None:
    touch(
        root,
        "Actor_01/01-01-01-01-01-01-01.mp4",  # neutral
        "Actor_01/01-01-02-01-01-01-01.mp4",  # calm
        "Actor_01/01-01-05-02-02-01-01.mp4",  # angry
        "Actor_01/02-01-05-02-02-01-01.mp4",  # video-only copy
        "Actor_01/01-02-03-01-01-01-01.mp4",  # song
        "Actor_02/03-01-06-01-01-02-02.wav",  # audio-only fearful
        "Actor_02/01-01-08-01-01-01-02.mp4",  # surprised
        "Actor_02/01-01-07-01-01-01-02.mp4",  # disgust
        "Actor_02/01-01-04-01-01-01-02.mp4",  # sad
        "Actor_02/01-01-03-01-01-01-02.mp4",  # happy
        "Actor_02/notes.mp4",  # not a RAVDESS name
    )


def test_ravdess_tree(tmp_path: Path) -> None:
    ravdess_tree(tmp_path)
    source = build("ravdess", root=str(tmp_path))
    clips = source.clips()
    assert source.class_names == EMOTIONS
    assert {c.path.name: (c.label, c.speaker) for c in clips} == {
        "01-01-01-01-01-01-01.mp4": ("neutral", "actor01"),
        "01-01-05-02-02-01-01.mp4": ("angry", "actor01"),
        "03-01-06-01-01-02-02.wav": ("fear", "actor02"),
        "01-01-08-01-01-01-02.mp4": ("surprise", "actor02"),
        "01-01-07-01-01-01-02.mp4": ("disgusted", "actor02"),
        "01-01-04-01-01-01-02.mp4": ("sad", "actor02"),
        "01-01-03-01-01-01-02.mp4": ("happy", "actor02"),
    }
    reasons = {s.path.name: s.reason for s in source.skipped}
    assert "has no class" in reasons["01-01-02-01-01-01-01.mp4"]
    assert "not a ravdess file name" in reasons["notes.mp4"]
    assert set(reasons) == {
        "01-01-02-01-01-01-01.mp4",
        "02-01-05-02-02-01-01.mp4",
        "01-02-03-01-01-01-01.mp4",
        "notes.mp4",
    }


def test_ravdess_calm_as_neutral_and_songs_by_config(tmp_path: Path) -> None:
    ravdess_tree(tmp_path)
    source = build(
        "ravdess",
        root=str(tmp_path),
        label_map={"calm": "neutral"},
        channels=["speech", "song"],
        modalities=["audio-video"],
    )
    labels = {c.path.name: c.label for c in source.clips()}
    assert labels["01-01-02-01-01-01-01.mp4"] == "neutral"
    assert labels["01-02-03-01-01-01-01.mp4"] == "happy"
    assert "03-01-06-01-01-02-02.wav" not in labels  # audio-only not selected


def write_audio(root: Path, *names: str) -> None:
    """Tiny real recordings (0.1 s of a tone), in the format the name's extension says."""
    import numpy as np
    import soundfile

    tone = 0.1 * np.sin(np.linspace(0, 2 * np.pi * 40, 1600)).astype(np.float32)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, tone, 16000)


def test_ravdess_audio_only_flac_and_wav_with_calm_counted(tmp_path: Path) -> None:
    write_audio(
        tmp_path,
        "Actor_03/03-01-01-01-01-01-03.flac",  # neutral
        "Actor_03/03-01-02-01-01-01-03.flac",  # calm
        "Actor_03/03-01-02-02-01-01-03.flac",  # calm
        "Actor_04/03-01-05-02-02-01-04.wav",  # angry
        "Actor_04/03-01-02-01-02-02-04.wav",  # calm
    )
    source = build("ravdess", root=str(tmp_path))
    assert {c.path.name: (c.label, c.speaker) for c in source.clips()} == {
        "03-01-01-01-01-01-03.flac": ("neutral", "actor03"),
        "03-01-05-02-02-01-04.wav": ("angry", "actor04"),
    }
    assert source.notes == ["3 calm clips left out: no class; map them with data.dataset.label_map"]
    mapped = build("ravdess", root=str(tmp_path), label_map={"calm": "neutral"})
    assert sum(c.label == "neutral" for c in mapped.clips()) == 4 and mapped.notes == []


def test_ravdess_actor_code_must_match_its_folder(tmp_path: Path) -> None:
    write_audio(
        tmp_path,
        "Actor_05/03-01-03-01-01-01-05.flac",
        "Actor_05/03-01-04-01-01-01-06.flac",  # actor 06's take in actor 05's folder
    )
    with pytest.raises(DatasetProblems) as caught:
        build("ravdess", root=str(tmp_path)).clips()
    assert caught.value.problems == [
        f"{tmp_path}/Actor_05/03-01-04-01-01-01-06.flac: actor 06 in the file name, but the "
        "folder is Actor_05"
    ]


def test_ravdess_take_in_two_modalities_is_used_once(tmp_path: Path) -> None:
    touch(tmp_path, "Actor_01/01-01-03-01-01-01-01.mp4", "Actor_01/03-01-03-01-01-01-01.wav",
          "Actor_01/03-01-04-01-01-01-01.wav")  # fmt: skip
    source = build("ravdess", root=str(tmp_path))
    assert sorted(c.path.name for c in source.clips()) == [
        "01-01-03-01-01-01-01.mp4", "03-01-04-01-01-01-01.wav",
    ]  # fmt: skip
    assert source.notes == ["1 audio-only copy left out: the audio-video take is used"]


def test_ravdess_real_speech(shared_data: Path) -> None:
    root = shared_data / "speech" / "ravdess"
    if not root.is_dir():
        pytest.skip(f"RAVDESS speech not found at {root}")
    source = build("ravdess", root=str(root))
    clips = source.clips()
    assert len(list(root.rglob("*.flac"))) == 960
    assert len(clips) == 960 - 128  # 8 calm takes per actor have no class
    assert source.class_names == EMOTIONS
    assert {c.speaker for c in clips} == {f"actor{n:02d}" for n in range(1, 17)}
    assert all(c.speaker == "actor" + c.path.parent.name[-2:] for c in clips)
    assert source.notes == [
        "128 calm clips left out: no class; map them with data.dataset.label_map"
    ]


def test_mead_corpus_tree(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "M003/video/front/angry/level_3/001.mp4",
        "M003/video/left_30/angry/level_3/001.mp4",
        "W015/video/front/neutral/level_1/002.mp4",
        "W015/audio/happy/level_2/001.m4a",
    )
    clips = build("mead", root=str(tmp_path)).clips()
    assert sorted((str(c.path.relative_to(tmp_path)), c.label, c.speaker) for c in clips) == [
        ("M003/video/front/angry/level_3/001.mp4", "angry", "M003"),
        ("W015/audio/happy/level_2/001.m4a", "happy", "W015"),
        ("W015/video/front/neutral/level_1/002.mp4", "neutral", "W015"),
    ]


def test_corpus_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="label_map keys must be emodb labels"):
        build("emodb", root=str(tmp_path), label_map={"calm": "neutral"})
    with pytest.raises(ConfigError, match="modalities"):
        build("ravdess", root=str(tmp_path), modalities=["3d"])
    with pytest.raises(ConfigError, match=r"data\.dataset\.root"):
        build("crema-d").clips()
    with pytest.raises(DatasetProblems, match="folder not found"):
        build("crema-d", root=str(tmp_path / "nowhere")).clips()
    with pytest.raises(DatasetProblems, match="no clips found"):
        build("crema-d", root=str(tmp_path)).clips()


# -- the user's own data --------------------------------------------------------------------


def test_folder_dataset(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "happy/anna_01.wav",
        "happy/sub/bob_02.mp4",
        "sad/anna_03.wav",
        "sad/readme.txt",
        "calm/bob_04.wav",
        "calm/anna_05.wav",
    )
    source = build(
        "folder",
        root=str(tmp_path),
        speaker_pattern=r"^(?P<speaker>[a-z]+)_",
        label_map={"calm": "none"},
    )
    clips = source.clips()
    assert source.class_names == ("sad", "happy")
    assert sorted((c.path.name, c.label, c.speaker) for c in clips) == [
        ("anna_01.wav", "happy", "anna"),
        ("anna_03.wav", "sad", "anna"),
        ("bob_02.mp4", "happy", "bob"),
    ]
    assert len(source.skipped) == 2


def test_folder_dataset_with_a_fixed_class_list_reports_all_problems(tmp_path: Path) -> None:
    touch(tmp_path, "happy/a.wav", "bored/b.wav", "nospeaker/c.wav")
    source = build(
        "folder",
        root=str(tmp_path),
        classes=["happy", "sad"],
        speaker_pattern=r"^([a-b])$",
        label_map={"nospeaker": "happy"},
    )
    with pytest.raises(DatasetProblems) as info:
        source.clips()
    problems = info.value.problems
    assert any("c.wav: speaker_pattern does not match" in p for p in problems)
    assert any("unknown label 'bored'" in p for p in problems)
    assert "class 'sad' has no clips" in problems
    with pytest.raises(ConfigError, match="speaker_pattern needs a group"):
        build("folder", root=str(tmp_path), speaker_pattern="[a-z]+")


def test_manifest_dataset(tmp_path: Path) -> None:
    touch(tmp_path, "clips/a.wav", "clips/b.wav", "clips/c.wav")
    manifest = tmp_path / "clips" / "list.csv"
    manifest.write_text(
        "path,label,speaker,split\na.wav,joy,s1,train\nb.wav,sad,s2,test\nc.wav,calm,s2,val\n"
    )
    source = build("manifest", path=str(manifest), label_map={"joy": "happy", "calm": "none"})
    clips = source.clips()
    assert source.class_names == ("sad", "happy")
    assert [(c.path, c.label, c.split) for c in clips] == [
        (tmp_path / "clips" / "a.wav", "happy", "train"),
        (tmp_path / "clips" / "b.wav", "sad", "test"),
    ]


def test_labels_outside_the_paper_s_classes_are_named_in_a_note(tmp_path: Path) -> None:
    """Without a class list a typo (``hapy``) trains as an eighth class: say so, listing them."""
    touch(tmp_path, "a.wav", "b.wav", "c.wav", "d.wav")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\na.wav,happy\nb.wav,hapy\nc.wav,Sad\nd.wav,sad\n")
    source = build("manifest", path=str(manifest))
    assert source.class_names == ("sad", "happy", "Sad", "hapy")
    [note] = source.notes
    assert note.endswith(": Sad, hapy; fix the list with data.dataset.classes or rename with "
                         "data.dataset.label_map")  # fmt: skip
    fixed = build("manifest", path=str(manifest), label_map={"hapy": "happy", "Sad": "sad"})
    assert fixed.notes == []
    mine = tmp_path / "mine.csv"
    mine.write_text("path,label\na.wav,low\nb.wav,high\n")
    assert build("manifest", path=str(mine), classes=["low", "high"]).notes == []


def test_bad_manifest_fails_with_every_problem(tmp_path: Path) -> None:
    touch(tmp_path, "a.wav", "b.wav")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\na.wav,sad\nb.wav\nmissing.wav,happy\na.wav,sad\nb.wav,meh\n")
    source = build("manifest", path=str(manifest), classes=["sad", "happy", "angry"])
    with pytest.raises(DatasetProblems) as info:
        source.class_names  # noqa: B018 - reading the classes is what triggers the check
    problems = info.value.problems
    assert len(problems) == 5
    assert problems[0].startswith(f"{manifest}:3: expected 2 fields")
    text = "\n".join(problems)
    for expected in (
        f"{manifest}:4: {tmp_path / 'missing.wav'}: file not found",
        "class 'angry' has no clips",
        f"{manifest}:5: {tmp_path / 'a.wav'}: duplicate path (first listed at {manifest}:2)",
        "unknown label 'meh'",
    ):
        assert expected in text
