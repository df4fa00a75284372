"""The mel-chroma front-end: same numbers as librosa, one STFT, real files of every kind."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest

from avsent.config import from_dict
from avsent.contracts import AudioFrontEnd
from avsent.errors import ConfigError
from avsent.media.audio import load_audio
from avsent.plugins.audio_features import MelChroma, MelChromaConfig
from avsent.registry import get_registry

SR = 22050


def tone(freq: float = 440.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_registered_and_satisfies_the_contract():
    frontend = get_registry().get("audio_frontend", "mel-chroma").build()
    assert isinstance(frontend, AudioFrontEnd)
    assert frontend.sample_rate == SR and frontend.spec.rows == 140
    assert frontend.spec.frames_per_second == pytest.approx(SR / 512)
    assert [(b.name, b.start, b.stop, b.frequency, b.db) for b in frontend.spec.bands] == [
        ("mel", 0, 128, True, True),
        ("chroma", 128, 140, False, False),
    ]
    assert MelChroma.describe(frontend.config) == frontend.spec  # no filter banks needed


def test_matches_librosa_on_one_spectrogram():
    y = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    features = MelChroma()(y)
    power = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=SR, n_fft=2048, n_mels=128)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    chroma = librosa.feature.chroma_stft(S=power, sr=SR, n_fft=2048, tuning=0.0)
    np.testing.assert_allclose(features[:128], log_mel, atol=1e-3)
    np.testing.assert_allclose(features[128:], chroma, atol=1e-5)


def test_estimated_tuning_matches_librosa_default():
    y = tone(452.0)  # a quarter-tone sharp: the estimate differs from 0
    features = MelChroma(MelChromaConfig(tuning=None))(y)
    expected = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=512)
    np.testing.assert_allclose(features[128:], expected, atol=1e-5)


@pytest.mark.parametrize("n", [1, 100, 2047, SR, 3 * SR + 17])
def test_frames_for_any_length(n):
    frontend = MelChroma()
    features = frontend(np.full(n, 0.1, np.float32))
    assert features.shape == (140, frontend.num_frames(n)) == (140, 1 + n // 512)
    assert features.dtype == np.float32 and np.isfinite(features).all()


def test_a_tone_lands_in_its_mel_band_and_pitch_class():
    frontend = MelChroma()
    features = frontend(tone(440.0))
    mel_centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=SR / 2)[1:-1]
    band = int(np.argmax(features[:128].mean(axis=1)))
    assert mel_centres[band] == pytest.approx(440.0, rel=0.1)
    assert int(np.argmax(features[128:].mean(axis=1))) == 9  # C, C#, ..., A = 9


def test_silence_gives_the_floor_not_nan():
    features = MelChroma()(np.zeros(SR, np.float32))
    assert np.isfinite(features).all()
    np.testing.assert_allclose(features[:128], -100.0, atol=1e-3)  # 10·log10(amin)
    assert (features[128:] == 0).all()


def test_the_rows_stay_in_db_and_the_spec_says_so():
    """Per-clip standardisation is the normalisation stage's (data.utterance_norm), so the
    front-end always gives levels in dB, and its spec always marks the mel band dB."""
    y = np.random.default_rng(1).standard_normal(2 * SR).astype(np.float32) * 0.001
    features = MelChroma()(y)
    assert features[:128].mean() < -30  # dB of a quiet noise, not standard deviations
    mel, chroma = MelChroma.describe(None).bands
    assert (mel.name, mel.db, mel.frequency) == ("mel", True, True)
    assert (chroma.name, chroma.db) == ("chroma", False)


@pytest.mark.parametrize(
    ("old", "says"),
    [
        ({"per_utterance_norm": True}, "per_utterance_norm: moved to data.utterance_norm"),
        ({"per_utterance_norm": False, "norm_eps": 1e-5}, "per_utterance_norm: moved to data"),
        ({"norm_eps": 1e-3}, "norm_eps: removed with per_utterance_norm"),
    ],
)
def test_an_old_config_is_told_where_per_utterance_norm_went(old, says):
    from avsent.run_config import default_run_config

    with pytest.raises(ConfigError, match=f"^audio_frontend.{says}"):
        default_run_config("mavsa-di", {f"audio_frontend.{k}": v for k, v in old.items()})


def test_config_from_a_toml_table_and_its_checks():
    config = from_dict(MelChromaConfig, {"sample_rate": 16000, "n_mels": 64, "fmax": 8000})
    frontend = MelChroma(config)
    assert frontend.spec.rows == 76 and frontend(tone()).shape[0] == 76
    with pytest.raises(ConfigError, match="fmax"):
        from_dict(MelChromaConfig, {"sample_rate": 16000, "fmax": 9000})
    with pytest.raises(ConfigError, match="n_mels"):
        from_dict(MelChromaConfig, {"n_mels": 0})


@pytest.mark.parametrize("bad", [np.zeros(0, np.float32), np.zeros((2, 100), np.float32)])
def test_rejects_non_mono_or_empty(bad):
    with pytest.raises(ValueError, match="mono samples"):
        MelChroma()(bad)


def test_real_files_of_every_kind(shared_data):
    frontend = MelChroma()
    files = [
        *sorted((shared_data / "speech/emodb").glob("*.wav"))[:3],
        *sorted((shared_data / "speech/crema-d").glob("*.mp3"))[:2],
        *sorted((shared_data / "av/crema-d").glob("*.flv"))[:2],
        shared_data / "av/mead/M030_sad_3_001.mp4",
    ]
    for path in files:
        samples = load_audio(path, frontend.sample_rate)
        features = frontend(samples)
        seconds = len(samples) / frontend.sample_rate
        assert features.shape == (140, 1 + len(samples) // 512), path
        assert features.shape[1] / frontend.spec.frames_per_second == pytest.approx(
            seconds, abs=0.05
        )
        assert np.isfinite(features).all(), path
        assert features[:128].max() > -20.0, path  # speech is well above the -100 dB floor
        assert features[128:].min() >= 0.0 and features[128:].max() == pytest.approx(1.0)


def test_fmax_must_lie_above_fmin_and_at_most_at_nyquist():
    assert from_dict(MelChromaConfig, {"sample_rate": 16000, "fmax": 8000}).fmax == 8000
    assert from_dict(MelChromaConfig, {"sample_rate": 16000, "fmax": 7999.5}).fmax == 7999.5
    assert from_dict(MelChromaConfig, {"fmin": 300.0, "fmax": 300.5}).fmax == 300.5
    for bad in ({"fmin": 300.0, "fmax": 300.0}, {"fmin": 300.0, "fmax": 200.0}, {"fmax": 0.0}):
        with pytest.raises(ConfigError, match="fmax"):
            from_dict(MelChromaConfig, bad)


def test_an_fmax_below_nyquist_narrows_the_mel_bands():
    """A 6 kHz tone shows in the top mel band with fmax = sr/2, and nowhere below 4 kHz."""
    y = tone(6000.0)
    full = MelChroma()(y)[:128].mean(axis=1)
    low = MelChroma(MelChromaConfig(fmax=4000.0))(y)[:128].mean(axis=1)
    centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=SR / 2)[1:-1]
    assert centres[int(np.argmax(full))] == pytest.approx(6000.0, rel=0.1)
    assert full.max() - low.max() > 30.0  # dB: the tone is outside every band below 4 kHz


def test_an_fmax_error_keeps_attrs_message_attribute_value_order():
    with pytest.raises(ValueError) as info:
        MelChromaConfig(sample_rate=16000, fmax=9000.0)
    message, attribute, value = info.value.args
    assert message == "must lie in (fmin=0.0, sample_rate/2=8000.0], got 9000.0"
    assert (attribute.name, value) == ("fmax", 9000.0)


@pytest.mark.parametrize(("tuning", "top_db"), [(0.0, 30.0), (None, None)])
def test_other_stft_sizes_fmin_amin_and_top_db_match_librosa(tuning, top_db):
    sr, n_fft, hop = 16000, 512, 160  # hop is not librosa's default n_fft // 4
    # noise then silence: the silent frames reach the amin floor and the top_db clip
    noise = np.random.default_rng(2).standard_normal(sr // 2).astype(np.float32) * 0.1
    y = np.concatenate([noise, np.zeros(sr // 2, np.float32)])
    config = MelChromaConfig(
        sample_rate=sr,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=40,
        fmin=300.0,
        amin=1e-4,
        top_db=top_db,
        tuning=tuning,
    )
    features = MelChroma(config)(y)
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=40, fmin=300.0)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-4, top_db=top_db)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, tuning=tuning)
    assert features.shape == (52, 1 + sr // hop)
    np.testing.assert_allclose(features[:40], log_mel, atol=1e-3)
    np.testing.assert_allclose(features[40:], chroma, atol=1e-5)


def test_no_top_db_keeps_more_than_80_db_of_range():
    # a tone, then silence at the -100 dB floor: librosa's own default would clip at 80 dB
    features = MelChroma()(np.concatenate([tone(), np.zeros(SR, np.float32)]))
    assert features[:128].max() - features[:128].min() > 90.0


def test_float64_samples_give_the_float32_features_bit_for_bit():
    y = np.random.default_rng(3).standard_normal(SR // 2) * 0.1
    frontend = MelChroma()
    np.testing.assert_array_equal(frontend(y), frontend(y.astype(np.float32)))


def test_a_clip_shorter_than_one_window_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MelChroma()(np.full(100, 0.1, np.float32)).shape == (140, 1)
