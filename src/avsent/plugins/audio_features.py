"""The paper's audio front-end: one STFT per clip → log-mel + chroma, stacked on frequency.

The mel and chroma filter banks are built once per front-end and applied to the same
power spectrogram, which is what ``librosa.feature.melspectrogram(S=...)`` and
``librosa.feature.chroma_stft(S=..., tuning=...)`` compute (a test checks it) without
rebuilding the banks — or a second STFT — for every clip.

Output rows (:meth:`MelChroma.describe`): band ``mel``, ``n_mels`` log-mel rows in dB (ref
1.0, so levels are comparable across clips), then band ``chroma``, 12 bins in [0, 1]. The
scales differ; the model normalises each row with dataset statistics stored in its buffers
(``avsent.data.normalise``), so they travel with the checkpoint; per-clip standardisation
is that stage's too (``data.utterance_norm``), so the cache always holds dB.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import attrs
import librosa
import numpy as np
from attrs import validators as v

from avsent.contracts import Band, FeatureSpec
from avsent.hookspecs import hookimpl

N_CHROMA = 12


def _check_fmax(config: MelChromaConfig, attribute: attrs.Attribute, value: float | None) -> None:
    nyquist = config.sample_rate / 2
    if value is not None and not config.fmin < value <= nyquist:
        message = f"must lie in (fmin={config.fmin}, sample_rate/2={nyquist}], got {value}"
        raise ValueError(message, attribute, value)


@attrs.define
class MelChromaConfig:
    sample_rate: int = attrs.field(default=22050, validator=v.ge(1000))
    n_fft: int = attrs.field(default=2048, validator=v.ge(16))
    hop_length: int = attrs.field(default=512, validator=v.ge(1))
    n_mels: int = attrs.field(default=128, validator=v.ge(1))
    fmin: float = attrs.field(default=0.0, validator=v.ge(0.0))
    fmax: float | None = attrs.field(default=None, validator=_check_fmax)  #: None = sr/2
    #: chroma tuning in fractions of a bin; None estimates it per clip (slower: piptrack)
    tuning: float | None = 0.0
    amin: float = attrs.field(default=1e-10, validator=v.gt(0.0))  #: power floor before dB
    top_db: float | None = None  #: clip each clip's log-mel to max − top_db; None = no clip
    #: fields that left this config, and what to do instead (``config.from_dict`` says it)
    moved_fields: ClassVar[dict[str, str]] = {
        "per_utterance_norm": "moved to data.utterance_norm (per-clip standardisation is the "
        "normalisation stage's now, so the cache keeps dB); delete it here and set "
        "data.utterance_norm instead",
        "norm_eps": "removed with per_utterance_norm: data.utterance_norm floors the std at "
        "1e-5; delete it",
    }


class MelChroma:
    """Waveform [N] → float32 [n_mels + 12, T], satisfying ``contracts.AudioFrontEnd``."""

    def __init__(self, config: MelChromaConfig | None = None) -> None:
        self.config = config or MelChromaConfig()
        c = self.config
        self.sample_rate = c.sample_rate
        self.spec = self.describe(c)
        self._mel_basis = librosa.filters.mel(
            sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax
        ).astype(np.float32)
        self._chroma_basis = (
            None if c.tuning is None else self._chroma_filters(c.tuning).astype(np.float32)
        )

    @staticmethod
    def describe(config: MelChromaConfig | None) -> FeatureSpec:
        """The rows this front-end produces for ``config``, without building filter banks."""
        c = config or MelChromaConfig()
        return FeatureSpec(
            bands=(
                Band("mel", 0, c.n_mels, frequency=True, db=True),
                Band("chroma", c.n_mels, c.n_mels + N_CHROMA),
            ),
            frames_per_second=c.sample_rate / c.hop_length,
        )

    def _chroma_filters(self, tuning: float) -> np.ndarray:
        c = self.config
        return librosa.filters.chroma(
            sr=c.sample_rate, n_fft=c.n_fft, tuning=tuning, n_chroma=N_CHROMA
        )

    def power_spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """|STFT|² [1 + n_fft/2, T], T = 1 + N // hop (centred frames)."""
        c = self.config
        with warnings.catch_warnings():
            # A clip shorter than one window is fine: centred frames are zero-padded.
            warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
            stft = librosa.stft(samples, n_fft=c.n_fft, hop_length=c.hop_length)
        return stft.real**2 + stft.imag**2

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(f"expected mono samples [N] with N > 0, got shape {samples.shape}")
        c = self.config
        power = self.power_spectrogram(samples)
        log_mel = librosa.power_to_db(
            self._mel_basis @ power, ref=1.0, amin=c.amin, top_db=c.top_db
        )
        chroma_basis = self._chroma_basis
        if chroma_basis is None:
            tuning = librosa.estimate_tuning(S=power, sr=c.sample_rate, bins_per_octave=N_CHROMA)
            chroma_basis = self._chroma_filters(tuning)
        chroma = librosa.util.normalize(chroma_basis @ power, norm=np.inf, axis=0)
        return np.concatenate([log_mel, chroma], axis=0).astype(np.float32, copy=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames T for a clip of ``num_samples`` (centred STFT)."""
        return 1 + num_samples // self.config.hop_length


@hookimpl
def register_audio_frontends(register):
    register.audio_frontend(
        "mel-chroma",
        MelChroma,
        config=MelChromaConfig,
        description="one STFT → log-mel (128) + chroma (12) stacked on frequency (paper §3.2)",
    )
