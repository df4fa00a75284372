"""The generated default data: real, decodable MP4s with faces Haar finds, made once."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import av
import librosa
import numpy as np
import pytest

from avsent.config import from_dict
from avsent.data import synthetic
from avsent.data.features import FeatureExtractor
from avsent.data.synthetic import SyntheticConfig, generate
from avsent.errors import ConfigError, NoFaceError
from avsent.labels import EMOTIONS
from avsent.run_config import default_run_config


def small(root: Path, **changes) -> SyntheticConfig:
    fields = dict(clips_per_class=2, speakers=2, seconds=0.6, fps=10, size=96)
    return SyntheticConfig(root=str(root), **{**fields, **changes})


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    config = small(tmp_path_factory.mktemp("synthetic"))
    return config, generate(config)


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    with av.open(str(path)) as container:
        codecs = [f"{s.type}:{s.codec_context.name}" for s in container.streams]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, audio, codecs


def test_every_class_and_speaker_gets_clips(generated) -> None:
    config, clips = generated
    assert len(clips) == len(EMOTIONS) * config.clips_per_class
    assert {c.label for c in clips} == set(EMOTIONS)
    assert {c.speaker for c in clips} == {"s01", "s02"}
    for label in EMOTIONS:  # speakers spread over each class, so speaker splits stay balanced
        assert {c.speaker for c in clips if c.label == label} == {"s01", "s02"}
    assert all(c.path.parent == config.folder() for c in clips)


def test_clips_are_mp4_with_h264_video_and_aac_audio(generated) -> None:
    config, clips = generated
    for clip in clips[:: len(EMOTIONS)]:
        frames, audio, codecs = decode(clip.path)
        assert codecs == ["video:h264", "audio:aac"]
        assert len(frames) == round(config.seconds * config.fps)
        assert frames[0].shape == (config.size, config.size, 3)
        assert audio.shape[1] >= config.seconds * config.sample_rate * 0.95
        assert np.abs(audio).max() > 0.05  # a voice, not silence


def test_the_face_pipeline_finds_the_small_blurred_faces_on_most_frames(tmp_path: Path) -> None:
    """Faces are small and low-resolution on purpose, but the detector (Haar, as the
    recipes run it: on an upscaled copy, then tracked) must still find them."""
    clips = generate(small(tmp_path, size=128, seconds=1.0))  # the default frame size
    config = default_run_config("mavsa-di", {"faces.landmarks.name": "none"})
    extractor = FeatureExtractor(config)
    fractions = []
    for clip in clips:
        try:
            fractions.append(extractor.extract(clip.path).face_fraction)
        except NoFaceError:
            fractions.append(0.0)
    assert np.mean(fractions) > 0.8
    assert np.mean(np.array(fractions) == 0.0) <= 0.1  # clips left out for want of a face


def test_same_config_gives_identical_files(generated, tmp_path: Path) -> None:
    _, clips = generated
    again = generate(small(tmp_path))
    assert [c.path.name for c in again] == [c.path.name for c in clips]
    assert all(
        a.path.read_bytes() == b.path.read_bytes() for a, b in zip(again, clips, strict=True)
    )


def test_existing_set_is_reused_and_an_incomplete_one_regenerated(tmp_path: Path) -> None:
    config = small(tmp_path, clips_per_class=1)
    clips = generate(config)
    stamp = clips[0].path.stat().st_mtime_ns
    assert generate(config)[0].path.stat().st_mtime_ns == stamp
    clips[3].path.unlink()
    regenerated = generate(config)
    assert all(c.path.is_file() for c in regenerated)
    assert {p.name for p in tmp_path.iterdir()} == {config.folder().name, *_locks(tmp_path)}


def _locks(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.endswith(".lock")]


def test_interrupted_generation_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    config = small(tmp_path, clips_per_class=1, workers=1)  # the patch reaches no worker process
    written = []
    real = synthetic.generate_clip

    def failing(cfg, label, speaker, rng, path):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        return real(cfg, label, speaker, rng, path)

    monkeypatch.setattr(synthetic, "generate_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(config)
    assert not config.folder().exists()
    assert set(_locks(tmp_path)) == {p.name for p in tmp_path.iterdir()}  # no temp folder left


def test_each_config_has_its_own_folder(tmp_path: Path) -> None:
    assert small(tmp_path).folder() != small(tmp_path, seed=1).folder()
    assert small(tmp_path).folder() == small(tmp_path).folder()
    assert small(tmp_path).folder().parent == tmp_path


def test_index_lists_the_files(generated) -> None:
    config, clips = generated
    entries = json.loads((config.folder() / synthetic.INDEX_FILE).read_text())
    assert [(e["file"], e["label"], e["speaker"]) for e in entries] == [
        (c.path.name, c.label, c.speaker) for c in clips
    ]


def test_voice_pitch_follows_the_class() -> None:
    speaker = synthetic.make_speakers(1, np.random.default_rng(0))[0]

    def median_pitch(label: str) -> float:
        samples, _ = synthetic.synthesize_voice(
            synthetic.VOICES[label], speaker.pitch_hz, 1.0, 16000, np.random.default_rng(3)
        )
        f0 = librosa.yin(samples, fmin=60, fmax=600, sr=16000)
        return float(np.median(f0))

    assert median_pitch("sad") < median_pitch("neutral") < median_pitch("fear")


def test_face_expression_follows_the_class(tmp_path: Path) -> None:
    config = small(tmp_path, face_noise=0.0)
    speaker = synthetic.make_speakers(1, np.random.default_rng(0))[0]
    envelope = np.zeros(16000)

    def mouth_darkness(label: str) -> float:
        frames = synthetic.render_frames(
            config, speaker, synthetic.FACES[label], envelope, np.random.default_rng(5),
            face_width=0.54, downscale=1.0,
        )  # fmt: skip
        lower_face = frames[0][int(0.6 * config.size) : int(0.85 * config.size)]
        return float((lower_face.mean(-1) < 50).sum())

    assert mouth_darkness("surprise") > mouth_darkness("neutral") + 10  # an open mouth


def test_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="multiple of 16"):
        from_dict(SyntheticConfig, {"size": 100})
    with pytest.raises(ConfigError, match="clips_per_class"):
        from_dict(SyntheticConfig, {"clips_per_class": 0})


# -- the design: cues split across modalities, noise and small faces -----------------------


def test_each_modality_alone_confuses_two_pairs_that_the_other_separates() -> None:
    faces, voices = synthetic.FACES, synthetic.VOICES
    assert faces["fear"] == faces["surprise"] and voices["fear"] != voices["surprise"]
    assert faces["angry"] == faces["disgusted"] and voices["angry"] != voices["disgusted"]
    assert voices["happy"] == voices["surprise"] and faces["happy"] != faces["surprise"]
    assert voices["sad"] == voices["disgusted"] and faces["sad"] != faces["disgusted"]
    assert synthetic.construction_ceilings() == {
        "audio": 5 / 7,
        "video": 5 / 7,
        "audio-visual": 1.0,
    }


def test_the_mouth_shows_no_voice_cue_that_splits_a_face_pair() -> None:
    """The mouth moves with the syllables, so a face pair must share its syllable rate."""
    for a, b in (("fear", "surprise"), ("angry", "disgusted")):
        assert synthetic.VOICES[a].rate == synthetic.VOICES[b].rate


@pytest.mark.parametrize("kind", synthetic.NOISE_KINDS)
def test_noise_is_added_at_the_drawn_snr(kind: str) -> None:
    rng = np.random.default_rng(0)
    speech, _ = synthetic.synthesize_voice(synthetic.VoiceStyle(), 150.0, 1.0, 16000, rng)
    noise = synthetic.background_noise(kind, len(speech), 16000, rng)
    mixed = synthetic.add_noise(speech, noise, 6.0).astype(np.float64)
    residual = mixed - speech
    snr = 10 * np.log10(np.mean(speech**2) / np.mean(residual**2))
    assert snr == pytest.approx(6.0, abs=0.1)


def test_latents_record_each_clip_within_the_configured_conditions(generated) -> None:
    config, clips = generated
    entries = synthetic.latents(config)
    assert [e["file"] for e in entries] == [c.path.name for c in clips]
    for entry in entries:
        cond = entry["conditions"]
        assert config.snr_db[0] <= cond["snr_db"] <= config.snr_db[1]
        assert config.face_width[0] <= cond["face_width"] <= config.face_width[1]
        assert config.downscale[0] <= cond["downscale"] <= config.downscale[1]
        assert cond["noise"] in config.noise_kinds
        assert set(entry["face"]) == set(attrs.fields_dict(synthetic.FaceStyle))
        assert set(entry["voice"]) >= set(attrs.fields_dict(synthetic.VoiceStyle))


def test_parallel_generation_writes_the_same_files_as_one_process(tmp_path: Path) -> None:
    one = generate(small(tmp_path / "one", clips_per_class=1, workers=1))
    two = generate(small(tmp_path / "two", clips_per_class=1, workers=2))
    assert [c.path.name for c in one] == [c.path.name for c in two]
    assert all(a.path.read_bytes() == b.path.read_bytes() for a, b in zip(one, two, strict=True))


def test_the_benchmark_preset_is_a_corpus_sized_set_of_the_same_model() -> None:
    preset = synthetic.SyntheticBenchmarkConfig()
    assert preset.speakers == 24 and preset.clips_per_class * len(EMOTIONS) == 1400
    default = SyntheticConfig()
    same_model = {k: v for k, v in attrs.asdict(default).items() if k not in
                  ("clips_per_class",)}  # fmt: skip
    assert {k: attrs.asdict(preset)[k] for k in same_model} == same_model
    assert preset.folder() != default.folder()
    assert attrs.evolve(default, workers=1).folder() == default.folder()  # how, not what
