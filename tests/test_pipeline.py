"""Prediction from media files: probabilities, per-file errors, loading a run."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile
import torch

from avsent.config import Choice
from avsent.data.features import ClipFeatures, FeatureExtractor
from avsent.data.loader import Sample, collate
from avsent.data.normalise import InputStats, normalise_item, set_model_stats
from avsent.errors import ConfigError, MediaError
from avsent.labels import EMOTIONS
from avsent.model import build_model, inputs_for
from avsent.pipeline import Pipeline, Prediction
from avsent.run_config import RunConfig

TINY_AUDIO = {"stem_channels": 4, "widths": (4, 8), "units_per_stage": 1}


def _audio_config() -> RunConfig:
    from avsent.plugins.drsn import DRSNConfig

    return RunConfig(
        audio=Choice("drsn", DRSNConfig(**TINY_AUDIO)),
        video=Choice("none"),
        audio_intra=Choice("identity"),
        video_intra=Choice("none"),
        fusion=Choice("passthrough"),
    )


@pytest.fixture
def pipeline() -> Pipeline:
    torch.manual_seed(0)
    config = _audio_config()
    model = build_model(config, inputs_for(config), EMOTIONS)
    set_model_stats(model, InputStats(torch.full((140,), -30.0), torch.full((140,), 20.0)))
    return Pipeline(model.train(), config)  # the pipeline must switch it to eval itself


def _tone(path: Path, freq: float = 220.0) -> Path:
    t = np.arange(16000) / 16000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


def test_predict_gives_a_distribution_over_the_classes(pipeline: Pipeline, tmp_path) -> None:
    clip = _tone(tmp_path / "tone.wav")
    probs = pipeline.predict(clip)
    assert list(probs) == list(EMOTIONS)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert not pipeline.model.training
    assert pipeline.predict(clip) == probs  # eval mode: dropout off, deterministic


def test_predict_matches_the_model_on_the_same_features(pipeline: Pipeline, tmp_path) -> None:
    clip = _tone(tmp_path / "tone.wav", 330.0)
    features = FeatureExtractor(pipeline.config).extract(clip)
    with torch.no_grad():
        logits = pipeline.model(collate([Sample(features, None)])).logits
    expected = torch.softmax(logits, -1)[0]
    got = torch.tensor(list(pipeline.predict(clip).values()))
    torch.testing.assert_close(got, expected)


def test_per_utterance_mode_scores_a_single_file(pipeline: Pipeline, tmp_path) -> None:
    """``data.utterance_norm`` needs only the file: prediction standardises it as training
    read it from the cache."""
    from avsent.data.normalise import standardise_utterance

    clip = _tone(tmp_path / "tone.wav", 330.0)
    config = attrs.evolve(
        pipeline.config, data=attrs.evolve(pipeline.config.data, utterance_norm=True)
    )
    per_utterance = Pipeline(pipeline.model, config)
    features = FeatureExtractor(config).extract(clip)
    standardised = attrs.evolve(features, audio=standardise_utterance(features.audio))
    with torch.no_grad():
        logits = pipeline.model(collate([Sample(standardised, None)])).logits
    got = torch.tensor(list(per_utterance.predict(clip).values()))
    torch.testing.assert_close(got, torch.softmax(logits, -1)[0])
    assert not torch.allclose(got, torch.tensor(list(pipeline.predict(clip).values())))


def test_a_long_file_is_the_mean_of_its_windows(pipeline: Pipeline, tmp_path) -> None:
    clip = _tone(tmp_path / "tone.wav", 440.0)  # 1 s: 44 frames, five windows of 16
    config = attrs.evolve(
        pipeline.config, train=attrs.evolve(pipeline.config.train, max_audio_frames=16)
    )
    windowed = Pipeline(pipeline.model, config)
    audio = FeatureExtractor(config).extract(clip).audio
    assert audio.shape[1] == 44
    with torch.no_grad():
        logits = [
            pipeline.model(
                collate([Sample(ClipFeatures(audio=audio[:, s : s + 16]), None)])
            ).logits[0]
            for s in (0, 8, 16, 24, 28)
        ]
    expected = torch.softmax(torch.stack(logits).mean(0), -1)
    got = torch.tensor(list(windowed.predict(clip).values()))
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, torch.tensor(list(pipeline.predict(clip).values())))


def _windowed(
    pipeline: Pipeline, window: int = 16, utterance_norm: bool = False, **frontend: object
) -> Pipeline:
    """``pipeline``'s model with ``window``-frame windows, ``data.utterance_norm`` and
    mel-chroma set by ``frontend``."""
    from avsent.plugins.audio_features import MelChromaConfig

    config = attrs.evolve(
        pipeline.config,
        train=attrs.evolve(pipeline.config.train, max_audio_frames=window),
        data=attrs.evolve(pipeline.config.data, utterance_norm=utterance_norm),
        audio_frontend=Choice("mel-chroma", MelChromaConfig(**frontend)),
    )
    return Pipeline(pipeline.model, config)


def _speech(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.2 * np.sin(t))) * (1 + np.sin(0.7 * t)) / 2
    soundfile.write(path, (wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32), 16000)
    return path


def _whole_file(pipeline: Pipeline, path: Path) -> torch.Tensor:
    """Today's path: the whole file's features, scored by windows in one batch."""
    return torch.tensor(list(pipeline._classify([pipeline.extract(path)[0]])[0].values()))


def _spectrogram_sizes(monkeypatch) -> list[int]:
    """Records how many samples each mel-chroma STFT gets from now on."""
    from avsent.plugins.audio_features import MelChroma

    sizes: list[int] = []
    stft = MelChroma.power_spectrogram

    def recorded(self, samples):
        sizes.append(samples.size)
        return stft(self, samples)

    monkeypatch.setattr(MelChroma, "power_spectrogram", recorded)
    return sizes


@pytest.mark.parametrize("utterance_norm", [False, True])
def test_a_long_file_streams_by_chunks_to_the_whole_file_s_result(
    pipeline: Pipeline, tmp_path, monkeypatch, utterance_norm
) -> None:
    clip = _speech(tmp_path / "long.wav", 20.0)  # 862 frames: 107 windows of 16
    windowed = _windowed(pipeline, utterance_norm=utterance_norm)
    expected = _whole_file(windowed, clip)
    sizes = _spectrogram_sizes(monkeypatch)
    got = torch.tensor(list(windowed.predict(clip).values()))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # a chunk of 16 frames and 2 of context either side (n_fft 2048, hop 512), plus a block
    assert len(sizes) > 20 and max(sizes) <= (16 + 2 * 2) * 512 + 8192
    assert len(sizes) > 100 if utterance_norm else len(sizes) < 70  # two passes, or one


@pytest.mark.parametrize("utterance_norm", [False, True])
def test_a_short_file_scores_bit_for_bit_as_before(pipeline, tmp_path, monkeypatch, utterance_norm):
    clip = _speech(tmp_path / "short.wav", 8.0)
    short = _windowed(pipeline, window=431, utterance_norm=utterance_norm)
    features = normalise_item(
        FeatureExtractor(short.config).extract(clip), utterance=utterance_norm
    )
    with torch.no_grad():
        logits = short.model.eval()(collate([Sample(features, None)])).logits
    expected = [float(p) for p in torch.softmax(logits.float(), -1)[0]]
    sizes = _spectrogram_sizes(monkeypatch)
    assert list(short.predict(clip).values()) == expected
    assert sizes == [8 * 22050]  # one STFT of the whole file, as before


def test_predict_many_streams_a_long_file_among_short_ones(pipeline, tmp_path) -> None:
    short, long = _tone(tmp_path / "short.wav"), _speech(tmp_path / "long.wav", 12.0)
    missing = tmp_path / "missing.wav"
    windowed = _windowed(pipeline)
    results = windowed.predict_many([short, long, missing, short], batch_size=3)
    assert [r.modalities for r in results] == ["audio", "audio", None, "audio"]
    assert results[0].probabilities == results[3].probabilities
    assert results[0].probabilities == pytest.approx(windowed.predict(short))
    got = torch.tensor(list(results[1].probabilities.values()))
    torch.testing.assert_close(got, _whole_file(windowed, long), rtol=1e-5, atol=1e-6)
    assert "not found" in results[2].error


def test_a_long_silent_file_fails_after_its_last_chunk(pipeline, tmp_path) -> None:
    clip = tmp_path / "silence.wav"
    soundfile.write(clip, np.zeros(16000 * 12, np.float32), 16000)
    windowed = _windowed(pipeline)
    with pytest.raises(MediaError, match="silent"):
        windowed.predict(clip)
    [result] = windowed.predict_many([clip])
    assert result.probabilities is None and "silent" in result.error


def test_a_front_end_that_needs_the_whole_clip_reads_it_whole(pipeline, tmp_path, monkeypatch):
    clip = _speech(tmp_path / "long.wav", 6.0)
    windowed = _windowed(pipeline, tuning=None)  # the chroma tuning estimated per clip
    expected = _whole_file(windowed, clip)
    sizes = _spectrogram_sizes(monkeypatch)
    assert torch.equal(torch.tensor(list(windowed.predict(clip).values())), expected)
    assert sizes == [6 * 22050]


def test_a_long_audio_visual_file_streams_its_audio_beside_its_faces(shared_data, monkeypatch):
    from avsent.run_config import default_run_config
    from tiny_av import TINY_AV

    clip = shared_data / "av" / "crema-d" / "1001_DFA_HAP_XX.flv"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    torch.manual_seed(0)
    config = default_run_config("mavsa-di", {**TINY_AV, "train.max_audio_frames": 16})
    av_pipeline = Pipeline(build_model(config, inputs_for(config), EMOTIONS), config)
    expected = _whole_file(av_pipeline, clip)
    sizes = _spectrogram_sizes(monkeypatch)
    [result] = av_pipeline.predict_many([clip])
    assert result.modalities == "audio+video" and len(sizes) > 1
    got = torch.tensor(list(result.probabilities.values()))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_predict_many_keeps_going_past_a_bad_file(pipeline: Pipeline, tmp_path) -> None:
    good = _tone(tmp_path / "a.wav")
    bad = tmp_path / "b.mp4"
    bad.write_bytes(b"\x00" * 300)
    missing = tmp_path / "c.wav"
    results = pipeline.predict_many([good, bad, missing, str(good)])
    assert [r.path for r in results] == [good, bad, missing, good]
    assert results[0].error is None and results[0].label in EMOTIONS
    assert results[0].probabilities == results[3].probabilities
    for failed in results[1:3]:
        assert failed.probabilities is None and failed.label is None
        assert str(failed.path) in failed.error
    assert "not found" in results[2].error


def test_a_nan_output_is_the_file_s_error_not_a_label(pipeline: Pipeline, tmp_path) -> None:
    with torch.no_grad():
        next(pipeline.model.parameters()).fill_(float("nan"))
    clip = _tone(tmp_path / "tone.wav")
    [result] = pipeline.predict_many([clip])
    assert result.probabilities is None and result.label is None
    assert result.error == f"{clip}: the model's output is not a number (NaN) for this file"
    with pytest.raises(MediaError, match="not a number"):
        pipeline.predict(clip)


def test_label_is_the_most_probable_class() -> None:
    assert Prediction(Path("x"), {"sad": 0.2, "happy": 0.7, "fear": 0.1}).label == "happy"


def test_model_and_config_must_agree_on_modalities(pipeline: Pipeline) -> None:
    with pytest.raises(ConfigError, match="modalities"):
        Pipeline(pipeline.model, RunConfig())  # the default config also uses video


def test_real_clip(pipeline: Pipeline, shared_data: Path) -> None:
    clip = shared_data / "av" / "crema-d" / "1001_DFA_HAP_XX.flv"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    # the model's own softmax on the same features (any softmax would sum to 1)
    features = FeatureExtractor(pipeline.config).extract(clip)
    with torch.no_grad():
        logits = pipeline.model(collate([Sample(features, None)])).logits
    got = torch.tensor(list(pipeline.predict(clip).values()))
    torch.testing.assert_close(got, torch.softmax(logits, -1)[0])
    assert got.max() < 1.0 and got.min() > 0.0


def test_from_run_restores_the_saved_model(pipeline: Pipeline, tmp_path) -> None:
    pytest.importorskip("avsent.faces.geometry", reason="face front-end not available yet")
    from avsent.training.checkpoint import checkpoint_path, config_header, save_checkpoint

    run = tmp_path / "run"
    header = config_header(pipeline.config, pipeline.model.class_names)
    save_checkpoint(checkpoint_path(run, "best"), pipeline.model, header)
    restored = Pipeline.from_run(run)
    clip = _tone(tmp_path / "tone.wav")
    assert restored.predict(clip) == pytest.approx(pipeline.predict(clip))


def _example():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "pipeline.py"
    spec = importlib.util.spec_from_file_location("example_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_script_prints_probabilities(tmp_path, capsys) -> None:
    clip = _tone(tmp_path / "tone.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    assert _example().main([str(clip), "--recipe", "drsn-audio"]) == 0
    out = capsys.readouterr().out
    assert "untrained" in out and f"{clip}: " in out
    assert all(name in out for name in EMOTIONS)
    assert _example().main([str(bad), "--recipe", "drsn-audio"]) == 1
    assert "cannot predict" in capsys.readouterr().out


def test_example_script_default_recipe_on_a_real_clip(shared_data: Path, capsys) -> None:
    pytest.importorskip("avsent.faces.pipeline", reason="face pipeline not available yet")
    clip = shared_data / "av" / "crema-d" / "1001_DFA_HAP_XX.flv"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    assert _example().main([str(clip)]) == 0
    out = capsys.readouterr().out
    assert f"{clip}: " in out and all(name in out for name in EMOTIONS)
