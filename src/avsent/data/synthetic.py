"""The built-in default data: generated talking faces that speak with an emotion.

Each clip is a real MP4 (H.264 video + AAC audio) so it goes through exactly the decode,
face-detection and feature path a user's recordings go through. The class shows in both
modalities, and by construction neither is enough alone: the faces of *fear* and
*surprise* are drawn from the same distribution, and so are those of *angry* and
*disgusted*; the voices of *happy* and *surprise* are, and so are those of *sad* and
*disgusted*. Each pair is told apart by the other modality only.

Every cue a clip shows is a realised value: the speaker's resting face or voice habit,
plus the class's offset scaled by the speaker's expressiveness and the clip's intensity
(face and voice drawn independently), plus per-clip jitter. The realised values are
stored per clip in ``clips.json`` (:func:`latents`), so an oracle can measure what each
modality could reach at best (``benchmarks/synthetic_ceiling.py``).

On top come the conditions the paper's components are for (its problem statement):
background noise of three kinds (white, pink, babble) at an SNR drawn per clip down to
0 dB — what DRSN's soft thresholding is for — and small, low-resolution faces: a face
that fills a quarter to half of the frame, rendered at up to 3× lower resolution and
upscaled (blur), then compressed at a drawn x264 quality — what SPD-Conv is for.

Generation is deterministic from the seed (each clip has its own), parallel over
``workers`` processes, and atomic: clips are written to a temporary folder that is
renamed into place only once complete, with ``clips.json`` listing them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs
import av
import cv2
import numpy as np
from attrs import validators as v
from rich.progress import Progress

from avsent.contracts import Clip
from avsent.errors import AvsentError
from avsent.labels import EMOTIONS

FORMAT_VERSION = 3  #: bump when the drawing or sound changes, so old caches are not reused
INDEX_FILE = "clips.json"
NOISE_KINDS = ("white", "pink", "babble")
#: fields that change how a set is made, not what it holds: left out of the folder's hash
_NOT_HASHED = ("root", "workers")


def _multiple_of(n: int):
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if value % n:
            raise ValueError(f"must be a multiple of {n}, got {value}", attribute)

    return check


def _range(low: float, high: float):
    """A (min, max) pair within [low, high]."""

    def check(instance: object, attribute: attrs.Attribute, value: tuple[float, float]) -> None:
        if len(value) != 2 or not low <= value[0] <= value[1] <= high:
            raise ValueError(f"must be [min, max] within [{low}, {high}], got {value}", attribute)

    return check


def _noise_kinds(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value or set(value) - set(NOISE_KINDS):
        raise ValueError(f"must be a non-empty list of {list(NOISE_KINDS)}, got {value}", attribute)


@attrs.define
class SyntheticConfig:
    """Size, seed and conditions of the generated set; each distinct config gets its own
    folder. The defaults are RAVDESS's 24 speakers with as many clips as the README's main
    job can generate, extract and train on within 5 minutes on 2 cores (252: 10.5 a
    speaker); the benchmark preset (:class:`SyntheticBenchmarkConfig`) is the same
    generative model at a corpus's size."""

    root: str = "~/.cache/avsent/synthetic"  #: parent folder; the set lives in a sub-folder
    clips_per_class: int = attrs.field(default=36, validator=v.ge(1))
    speakers: int = attrs.field(default=24, validator=v.ge(1))
    seconds: float = attrs.field(default=2.0, validator=[v.gt(0.2), v.le(30.0)])
    fps: int = attrs.field(default=25, validator=[v.ge(5), v.le(60)])
    #: frame side in pixels, a multiple of 16 (whole H.264 macroblocks)
    size: int = attrs.field(default=128, validator=[v.ge(96), v.le(512), _multiple_of(16)])
    sample_rate: int = attrs.field(default=16000, validator=v.in_((8000, 16000, 22050, 44100)))
    seed: int = attrs.field(default=0, validator=v.ge(0))
    face_noise: float = attrs.field(default=6.0, validator=v.ge(0.0))  #: pixel noise std (0-255)
    #: background noise SNR, drawn per clip in this range
    snr_db: tuple[float, float] = attrs.field(default=(0.0, 30.0), validator=_range(-20, 80))
    noise_kinds: tuple[str, ...] = attrs.field(default=NOISE_KINDS, validator=_noise_kinds)
    #: face width as a share of the frame, drawn per clip
    face_width: tuple[float, float] = attrs.field(default=(0.25, 0.55), validator=_range(0.1, 0.6))
    #: the frame is rendered this many times smaller and upscaled back (blur), drawn per clip
    downscale: tuple[float, float] = attrs.field(default=(1.0, 3.0), validator=_range(1.0, 8.0))
    #: x264 constant rate factor (higher = more compression), drawn per clip
    crf: tuple[int, int] = attrs.field(default=(20, 32), validator=_range(0, 51))
    workers: int = attrs.field(default=2, validator=v.ge(1))  #: generating processes

    def folder(self) -> Path:
        """Where this config's clips live: ``root/v<format>-<hash of what the clips hold>``."""
        fields = attrs.asdict(self)
        for name in _NOT_HASHED:
            fields.pop(name)
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        return Path(self.root).expanduser() / f"v{FORMAT_VERSION}-{digest}"


@attrs.define
class SyntheticBenchmarkConfig(SyntheticConfig):
    """The benchmark preset: RAVDESS's scale (24 speakers, 1,400 clips), same model."""

    clips_per_class: int = attrs.field(default=200, validator=v.ge(1))


# -- class styles -----------------------------------------------------------------------


@attrs.frozen
class FaceStyle:
    """Expression as offsets from neutral; intensity scales them."""

    brow_tilt: float = 0.0  #: + = inner ends raised (sad/fear), - = knitted (anger)
    brow_raise: float = 0.0
    eye_open: float = 0.0
    smile: float = 0.0  #: mouth-corner curve: + up, - down
    mouth_open: float = 0.0
    asymmetry: float = 0.0  #: one-sided sneer (disgust)
    talk: float = 1.0  #: how much the mouth moves with the voice


@attrs.frozen
class VoiceStyle:
    pitch: float = 1.0  #: × the speaker's base pitch
    slope: float = 0.0  #: pitch change over the clip, in octaves
    bounce: float = 0.05  #: per-syllable pitch variation, in octaves
    tremor: float = 0.0  #: vibrato depth, in octaves
    energy: float = 0.55
    rate: float = 3.5  #: syllables per second (the mouth shows it too)
    breath: float = 0.05  #: share of aspiration noise


_WIDE_EYED = FaceStyle(brow_tilt=0.2, brow_raise=0.75, eye_open=0.45, smile=-0.1, mouth_open=0.5)
_SCOWL = FaceStyle(brow_tilt=-0.65, brow_raise=-0.3, eye_open=-0.35, smile=-0.3, asymmetry=0.45)
#: one face for fear and surprise, one for angry and disgusted: only the voice tells them apart
FACES: dict[str, FaceStyle] = {
    "sad": FaceStyle(brow_tilt=0.45, brow_raise=0.05, eye_open=-0.2, smile=-0.8, talk=0.6),
    "angry": _SCOWL,
    "surprise": _WIDE_EYED,
    "fear": _WIDE_EYED,
    "happy": FaceStyle(brow_raise=0.1, eye_open=-0.15, smile=0.9, mouth_open=0.25, talk=1.1),
    "disgusted": _SCOWL,
    "neutral": FaceStyle(),
}
_BRIGHT = VoiceStyle(pitch=1.28, slope=0.5, bounce=0.18, energy=0.8, rate=4.5)
_LOW = VoiceStyle(pitch=0.86, slope=-0.3, bounce=0.05, energy=0.32, rate=3.0, breath=0.2)
#: one voice for happy and surprise, one for sad and disgusted: only the face tells them
#: apart. Rates are equal within each face pair, since the mouth moves with the syllables.
VOICES: dict[str, VoiceStyle] = {
    "sad": _LOW,
    "angry": VoiceStyle(pitch=1.2, slope=-0.2, bounce=0.15, energy=1.0, rate=3.0),
    "surprise": _BRIGHT,
    "fear": VoiceStyle(pitch=1.35, slope=0.05, tremor=0.06, energy=0.55, rate=4.5, breath=0.22),
    "happy": _BRIGHT,
    "disgusted": _LOW,
    "neutral": VoiceStyle(),
}


def construction_ceilings() -> dict[str, float]:
    """The best accuracy each modality allows by construction (equal class sizes).

    Classes drawn from the same style cannot be told apart, so a classifier can be right
    on at most one of them: the ceiling is (distinct styles) / (classes). Audio-visual
    counts distinct (face, voice) pairs. These bound any model; noise, jitter and
    intensity pull the reachable figure lower (the oracle in
    ``benchmarks/synthetic_ceiling.py`` measures that).
    """
    n = len(EMOTIONS)
    return {
        "audio": len({VOICES[e] for e in EMOTIONS}) / n,
        "video": len({FACES[e] for e in EMOTIONS}) / n,
        "audio-visual": len({(FACES[e], VOICES[e]) for e in EMOTIONS}) / n,
    }


FACE_JITTER = 0.08  #: per-clip std of every face cue (label-free)
VOICE_JITTER = 0.06  #: per-clip relative std of every voice cue (label-free)

VOICE_TOP_HZ = 5000.0  #: harmonics above this carry little energy; leaving them out is faster

# Vowel formants (F1, F2, F3) in Hz, cycled through syllable by syllable.
VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)


@attrs.frozen
class Speaker:
    """Label-free identity: what a speaker-independent split must generalise over."""

    name: str
    skin: tuple[float, float, float]  #: RGB 0-1
    hair: tuple[float, float, float]
    aspect: float  #: face height / width
    eye_gap: float
    pitch_hz: float
    resting: FaceStyle  #: the speaker's face at rest (offsets from the neutral face)
    expressiveness: float  #: × every expression and intonation
    rate: float  #: × syllable rate: a fast or a slow talker
    loudness: float  #: × energy


def make_speakers(count: int, rng: np.random.Generator) -> list[Speaker]:
    speakers = []
    for i in range(count):
        tone = rng.uniform(0.5, 0.95)
        skin = (tone, tone * rng.uniform(0.72, 0.85), tone * rng.uniform(0.55, 0.7))
        hair_level = rng.uniform(0.05, 0.35)
        hair = (hair_level * rng.uniform(0.8, 1.3), hair_level, hair_level * rng.uniform(0.6, 1.0))
        rest = rng.normal(0, 0.12, size=4)
        speakers.append(
            Speaker(
                name=f"s{i + 1:02d}",
                skin=skin,
                hair=tuple(min(c, 1.0) for c in hair),
                aspect=float(rng.uniform(1.18, 1.4)),
                eye_gap=float(rng.uniform(0.34, 0.42)),
                pitch_hz=float(rng.choice([rng.uniform(95, 140), rng.uniform(170, 240)])),
                resting=FaceStyle(*(float(x) for x in rest), talk=float(rng.uniform(0.85, 1.15))),
                expressiveness=float(rng.uniform(0.75, 1.25)),
                rate=float(rng.uniform(0.85, 1.15)),
                loudness=float(rng.uniform(0.75, 1.3)),
            )
        )
    return speakers


def realise_face(
    style: FaceStyle, speaker: Speaker, intensity: float, rng: np.random.Generator
) -> FaceStyle:
    """The clip's face: resting face + expressiveness × intensity × class offset + jitter."""
    scale = speaker.expressiveness * intensity
    rest, values = attrs.asdict(speaker.resting), {}
    for k, val in attrs.asdict(style).items():
        offset = val - 1.0 if k == "talk" else val  # talk is a factor around 1
        values[k] = rest[k] + scale * offset + rng.normal(0, FACE_JITTER)
    values["asymmetry"] = abs(values["asymmetry"])  # a sneer is one-sided either way
    values["talk"] = max(values["talk"], 0.1)
    return FaceStyle(**values)


def realise_voice(
    style: VoiceStyle, speaker: Speaker, intensity: float, rng: np.random.Generator
) -> VoiceStyle:
    """The clip's voice: the class's cues toward neutral by intensity, the speaker's habits
    (expressiveness widens intonation; rate and loudness), and relative jitter."""
    neutral = VoiceStyle()

    def mix(name: str) -> float:
        a, b = getattr(style, name), getattr(neutral, name)
        return b + intensity * (a - b)

    def jitter() -> float:
        return float(rng.normal(1.0, VOICE_JITTER))

    e = speaker.expressiveness
    return VoiceStyle(
        pitch=2.0 ** (e * math.log2(mix("pitch"))) * jitter(),
        slope=e * mix("slope") + rng.normal(0, 0.05),
        bounce=e * mix("bounce") * jitter(),
        tremor=intensity * style.tremor * jitter(),
        energy=mix("energy") * speaker.loudness * jitter(),
        rate=mix("rate") * speaker.rate * jitter(),
        breath=float(np.clip(mix("breath") * jitter(), 0.0, 0.6)),
    )


# -- audio ------------------------------------------------------------------------------


def syllable_envelope(
    n: int, sr: int, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude envelope [n] (0-1) of a run of syllables, and the syllable index per sample."""
    env = np.zeros(n)
    index = np.zeros(n, dtype=np.int64)
    t = rng.uniform(0.02, 0.15) * sr
    k = 0
    while t < n:
        length = int(sr / rate * rng.uniform(0.55, 0.85))
        gap = int(sr / rate * rng.uniform(0.15, 0.6))
        start, stop = int(t), min(int(t) + length, n)
        if stop > start:
            bump = np.sin(np.linspace(0, np.pi, length))[: stop - start] ** 0.7
            env[start:stop] = np.maximum(env[start:stop], bump * rng.uniform(0.7, 1.0))
            index[start:] = k
        t += length + gap
        k += 1
    return env, index


def synthesize_voice(
    voice: VoiceStyle, f0_hz: float, seconds: float, sr: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A clean voiced utterance with realised cues: (samples [N], syllable envelope [N])."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    env, syl = syllable_envelope(n, sr, voice.rate, rng)

    syl_offsets = rng.normal(0, voice.bounce, size=int(syl.max()) + 1)
    octaves = (
        voice.slope * (t / seconds - 0.5)
        + syl_offsets[syl]
        + voice.tremor * np.sin(2 * np.pi * rng.uniform(5.5, 8.0) * t)
    )
    octaves = np.convolve(
        octaves, np.hanning(int(0.03 * sr)) / np.hanning(int(0.03 * sr)).sum(), "same"
    )
    f0 = f0_hz * voice.pitch * 2.0**octaves
    phase = 2 * np.pi * np.cumsum(f0) / sr

    vowel_seq = rng.integers(0, len(VOWELS), size=int(syl.max()) + 1)
    formants = VOWELS[vowel_seq][syl] * rng.uniform(0.92, 1.08)  # [n, 3]
    smooth = np.hanning(int(0.04 * sr))
    smooth /= smooth.sum()
    formants = np.stack([np.convolve(formants[:, i], smooth, "same") for i in range(3)], 1)
    formants[: len(smooth)] = formants[len(smooth)]
    formants[-len(smooth) :] = formants[-len(smooth) - 1]

    voiced = np.zeros(n)
    top = min(sr / 2 * 0.95, VOICE_TOP_HZ)
    for k in range(1, int(top / f0.min()) + 1):
        freq = k * f0
        gain = sum(
            np.exp(-0.5 * ((freq - formants[:, i]) / (60.0 + 0.06 * formants[:, i])) ** 2)
            * (1.0, 0.6, 0.3)[i]
            for i in range(3)
        )
        gain = (gain + 0.05) / k**0.5 * (freq < top)
        voiced += gain * np.sin(k * phase)
    voiced /= np.abs(voiced).max() + 1e-9

    aspiration = np.convolve(rng.normal(0, 1, n), [1, -0.6], "same") * 0.3
    speech = env * ((1 - voice.breath) * voiced + voice.breath * aspiration)
    return speech * (0.65 * voice.energy), env  # 0.65: the loudest voices stay below 1


def background_noise(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Label-free noise [n]: white, pink (1/f power) or babble (three neutral talkers)."""
    if kind == "white":
        return rng.normal(0, 1, n)
    if kind == "pink":
        spectrum = np.fft.rfft(rng.normal(0, 1, n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0
        return np.fft.irfft(spectrum, n)
    babble = np.zeros(n)
    for _ in range(3):
        talker = attrs.evolve(VoiceStyle(), rate=rng.uniform(3.0, 5.0))
        speech, _ = synthesize_voice(talker, rng.uniform(95, 240), n / sr, sr, rng)
        babble += np.roll(speech, int(rng.integers(0, n))) * rng.uniform(0.5, 1.0)
    return babble


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` with ``noise`` scaled to ``snr_db`` (over the whole clip), in -1..1."""
    signal_power = np.mean(speech**2) + 1e-12
    noise = noise * math.sqrt(signal_power / 10 ** (snr_db / 10) / (np.mean(noise**2) + 1e-12))
    samples = speech + noise
    peak = np.abs(samples).max()
    if peak > 0.98:
        samples *= 0.98 / peak
    return samples.astype(np.float32)


# -- video ------------------------------------------------------------------------------


SUPERSAMPLE = 2  # draw at 2× and shrink: smooth edges without per-primitive anti-aliasing
FACE_HALF_WIDTH = 0.27  #: at scale 1, as a share of the frame side


def _bgr(rgb: tuple[float, float, float], scale: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * scale * 255, 0, 255)) for c in reversed(rgb))  # type: ignore[return-value]


def draw_face(
    size: int,
    speaker: Speaker,
    face: FaceStyle,
    *,
    center: tuple[float, float],
    scale: float,
    mouth_open: float,
    blink: float,
    background: np.ndarray,
    light: tuple[float, float],
) -> np.ndarray:
    """One RGB frame [size, size, 3] uint8 with a shaded frontal face.

    The shading (dark eye sockets, a light nose bridge and cheeks, darker jaw edges) is what
    a Haar frontal-face cascade keys on, so the face is found like a real one.
    """
    s = size * SUPERSAMPLE
    img = background.copy()
    cx, cy = center[0] * s, center[1] * s
    a = FACE_HALF_WIDTH * s * scale  # face half-width
    b = a * speaker.aspect

    def P(x: float, y: float) -> tuple[int, int]:
        """Face coordinates (x, y in units of a, from the centre) → pixel."""
        return round(cx + x * a), round(cy + y * a)

    def L(r: float) -> int:
        return max(1, round(r * a))

    # hair behind the head, then the face with radial shading
    cv2.ellipse(img, P(0, -0.25), (L(1.12), int(b * 1.05)), 0, 180, 360, _bgr(speaker.hair), -1)
    y0, y1 = max(0, int(cy - b)), min(s, int(cy + b) + 2)  # shade only the face's box
    x0, x1 = max(0, int(cx - a)), min(s, int(cx + a) + 2)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    r2 = ((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2
    inside = r2 <= 1.0
    shade = 1.05 - 0.3 * r2**2 + light[0] * (xs - cx) / a * 0.18
    skin = np.array(_bgr(speaker.skin), dtype=np.float32)
    face_px = np.clip(shade[..., None] * skin, 0, 255).astype(np.uint8)
    img[y0:y1, x0:x1][inside] = face_px[inside]
    cv2.ellipse(img, P(0, -0.25 * speaker.aspect - 0.65), (L(1.0), L(0.5)), 0, 180, 360,
                _bgr(speaker.hair), -1)  # fringe: a dark forehead top  # fmt: skip

    socket = _bgr(speaker.skin, 0.45)
    white = _bgr(speaker.skin, 0.9)
    iris = (40, 30, 25)
    brow_col = _bgr(speaker.hair, 0.8)
    eye_y = -0.28 * speaker.aspect
    gap = speaker.eye_gap / 0.38
    eye_h = np.clip(0.13 * (1.0 + face.eye_open) * blink, 0.01, 0.3)
    for side in (-1, 1):
        ex = side * 0.38 * gap
        cv2.ellipse(img, P(ex, eye_y), (L(0.3), L(0.2)), 0, 0, 360, socket, -1)
        cv2.ellipse(img, P(ex, eye_y), (L(0.19), L(eye_h)), 0, 0, 360, white, -1)
        cv2.circle(img, P(ex, eye_y), L(min(0.13, eye_h)), iris, -1)
        # brows: inner end moves with tilt, the whole brow with raise
        lift = 0.2 * face.brow_raise
        inner = P(side * 0.12 * gap, eye_y - 0.26 - lift - 0.2 * face.brow_tilt)
        outer = P(side * 0.62 * gap, eye_y - 0.24 - lift + 0.05 * face.brow_tilt)
        cv2.line(img, inner, outer, brow_col, L(0.09))

    # nose: light bridge between the eyes, shadowed sides, dark nostrils
    bridge = _bgr(speaker.skin, 1.12)
    cv2.ellipse(img, P(0, eye_y + 0.35), (L(0.09), L(0.38)), 0, 0, 360, bridge, -1)
    cv2.line(img, P(0.12, eye_y + 0.25), P(0.16, eye_y + 0.65), _bgr(speaker.skin, 0.75), L(0.04))
    for side in (-1, 1):
        cv2.circle(img, P(side * 0.09, eye_y + 0.72), L(0.04), _bgr(speaker.skin, 0.45), -1)

    # mouth: a curve for the lips, an opening that follows the voice
    mouth_y = 0.48 * speaker.aspect
    width = 0.38 * (1.0 + 0.25 * face.smile)
    xs_m = np.linspace(-width, width, 21)
    curve = -face.smile * 0.22 * (xs_m / width) ** 2 + face.asymmetry * 0.12 * (xs_m / width)
    opening = np.clip(mouth_open, 0.0, 0.4)
    upper = [
        P(x, mouth_y + c - opening * 0.5 * (1 - (x / width) ** 2))
        for x, c in zip(xs_m, curve, strict=True)
    ]
    lower = [
        P(x, mouth_y + c + opening * 0.5 * (1 - (x / width) ** 2))
        for x, c in zip(xs_m, curve, strict=True)
    ]
    lips = _bgr((speaker.skin[0] * 0.8, speaker.skin[1] * 0.45, speaker.skin[2] * 0.45))
    if opening > 0.01:
        cv2.fillPoly(img, [np.array(upper + lower[::-1], dtype=np.int32)], (25, 15, 20))
    cv2.polylines(img, [np.array(upper, dtype=np.int32)], False, lips, L(0.05))
    cv2.polylines(img, [np.array(lower, dtype=np.int32)], False, lips, L(0.06))

    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    gain = light[1]
    return np.clip(img.astype(np.float32) * gain, 0, 255)[..., ::-1].astype(np.uint8)


def make_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft two-colour gradient with blotches (BGR, supersampled)."""
    s = size * SUPERSAMPLE
    c0, c1 = rng.uniform(40, 200, size=3), rng.uniform(40, 200, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:s, 0:s] / s
    w = (np.cos(angle) * xs + np.sin(angle) * ys + 1) / 2
    img = c0 * (1 - w[..., None]) + c1 * w[..., None]
    for _ in range(4):
        blob = np.zeros((s, s), np.float32)
        cv2.circle(
            blob,
            tuple(int(x) for x in rng.integers(0, s, 2)),
            int(rng.integers(s // 10, s // 3)),
            1.0,
            -1,
        )
        blob = cv2.GaussianBlur(blob, (0, 0), s / 12)
        img += blob[..., None] * rng.uniform(-40, 40, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_frames(
    cfg: SyntheticConfig,
    speaker: Speaker,
    face: FaceStyle,
    envelope: np.ndarray,
    rng: np.random.Generator,
    *,
    face_width: float,
    downscale: float,
) -> np.ndarray:
    """The clip's frames [T, size, size, 3] uint8 RGB with the realised ``face``, its width
    ``face_width`` of the frame, rendered ``downscale`` times smaller and upscaled back;
    the mouth follows ``envelope``."""
    n_frames = round(cfg.seconds * cfg.fps)
    background = make_background(cfg.size, rng)
    scale = face_width / (2 * FACE_HALF_WIDTH)
    margin = np.array([1.0, speaker.aspect]) * FACE_HALF_WIDTH * scale + 0.02  # face in frame
    center = rng.uniform(margin, 1 - margin)
    light = (rng.uniform(-1, 1), rng.uniform(0.75, 1.2))
    drift = rng.normal(0, 0.004, size=(n_frames, 2)).cumsum(0)
    sway = rng.uniform(0.005, 0.02) * np.sin(
        2 * np.pi * rng.uniform(0.3, 1.0) * np.arange(n_frames) / cfg.fps
    )
    blink_at = rng.uniform(0, cfg.seconds)
    small = max(16, round(cfg.size / downscale))
    per_frame = len(envelope) / n_frames
    frames = np.empty((n_frames, cfg.size, cfg.size, 3), np.uint8)
    for i in range(n_frames):
        t = i / cfg.fps
        env = envelope[int(i * per_frame) : int((i + 1) * per_frame)].mean()
        at = np.clip(center + drift[i] + (sway[i], 0.0), margin, 1 - margin)
        frame = draw_face(
            cfg.size,
            speaker,
            face,
            center=(float(at[0]), float(at[1])),
            scale=scale,
            mouth_open=max(0.0, 0.6 * face.mouth_open + 0.22 * face.talk * env),
            blink=0.15 if abs(t - blink_at) < 0.08 else 1.0,
            background=background,
            light=light,
        )
        if small < cfg.size:  # a low-resolution camera, upscaled: the detail is gone
            low = cv2.resize(frame, (small, small), interpolation=cv2.INTER_AREA)
            frame = cv2.resize(low, (cfg.size, cfg.size), interpolation=cv2.INTER_LINEAR)
        noise = rng.standard_normal(frame.shape, dtype=np.float32) * cfg.face_noise
        frames[i] = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return frames


# -- files -------------------------------------------------------------------------------


def write_av_clip(
    path: Path, frames: np.ndarray, fps: int, samples: np.ndarray, sample_rate: int, crf: int = 20
) -> None:
    """Frames [T,H,W,3] RGB + mono float samples → MP4 (H.264 yuv420p at ``crf`` + AAC)."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        # one thread and no macroblock-tree rate control: otherwise x264's bytes vary run to
        # run, and the feature cache (keyed by file content) would miss after a regeneration
        video.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        audio = out.add_stream("aac", rate=sample_rate, layout="mono")
        for frame in frames:
            yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)  # converted here: reproducible bytes
            for packet in video.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        chunk = 1024
        for start in range(0, len(samples), chunk):
            piece = samples[start : start + chunk].reshape(1, -1)
            aframe = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
            aframe.sample_rate = sample_rate
            aframe.pts = start
            for packet in audio.encode(aframe):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


def generate_clip(
    cfg: SyntheticConfig, label: str, speaker: Speaker, rng: np.random.Generator, path: Path
) -> dict[str, Any]:
    """Write one clip; returns its latent parameters (the realised cues and conditions)."""
    face_intensity = float(rng.uniform(0.5, 1.0))
    voice_intensity = float(rng.uniform(0.5, 1.0))
    face = realise_face(FACES[label], speaker, face_intensity, rng)
    voice = realise_voice(VOICES[label], speaker, voice_intensity, rng)
    speech, envelope = synthesize_voice(voice, speaker.pitch_hz, cfg.seconds, cfg.sample_rate, rng)
    kind = str(rng.choice(cfg.noise_kinds))
    snr = float(rng.uniform(*cfg.snr_db))
    noise = background_noise(kind, len(speech), cfg.sample_rate, rng)
    samples = add_noise(speech, noise, snr)
    face_width = float(rng.uniform(*cfg.face_width))
    downscale = float(rng.uniform(*cfg.downscale))
    crf = int(rng.integers(cfg.crf[0], cfg.crf[1] + 1))
    frames = render_frames(
        cfg, speaker, face, envelope, rng, face_width=face_width, downscale=downscale
    )
    write_av_clip(path, frames, cfg.fps, samples, cfg.sample_rate, crf=crf)
    return {
        "face": attrs.asdict(face),
        "voice": {**attrs.asdict(voice), "f0_hz": speaker.pitch_hz * voice.pitch},
        "conditions": {
            "face_intensity": face_intensity,
            "voice_intensity": voice_intensity,
            "noise": kind,
            "snr_db": snr,
            "face_width": face_width,
            "downscale": downscale,
            "crf": crf,
        },
    }


def clip_plan(cfg: SyntheticConfig) -> list[tuple[str, str, Speaker, int]]:
    """(file name, label, speaker, seed) for every clip, speakers spread evenly per class."""
    speakers = make_speakers(cfg.speakers, np.random.default_rng([cfg.seed, 0]))
    plan = []
    for c, label in enumerate(EMOTIONS):
        for i in range(cfg.clips_per_class):
            speaker = speakers[i % len(speakers)]
            name = f"{speaker.name}_{label}_{i:03d}.mp4"
            plan.append(
                (
                    name,
                    label,
                    speaker,
                    int(np.random.SeedSequence([cfg.seed, 1, c, i]).generate_state(1)[0]),
                )
            )
    return plan


def _read_entries(folder: Path) -> list[dict[str, Any]] | None:
    try:
        return json.loads((folder / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None


def read_index(folder: Path) -> list[Clip] | None:
    """The clips of a complete generated folder, or None when it is missing or incomplete."""
    entries = _read_entries(folder)
    if entries is None:
        return None
    clips = [Clip(folder / e["file"], e["label"], e["speaker"]) for e in entries]
    if not all(c.path.is_file() and c.path.stat().st_size > 0 for c in clips):
        return None
    return clips


def latents(cfg: SyntheticConfig) -> list[dict[str, Any]]:
    """Per clip of the generated set, in :func:`generate`'s order: file, label, speaker and
    the latent parameters (``face``, ``voice`` cues as realised; ``conditions``)."""
    generate(cfg)
    return _read_entries(cfg.folder()) or []


def _make_clip(
    cfg: SyntheticConfig, name: str, label: str, speaker: Speaker, seed: int, out: Path
) -> dict[str, Any]:
    """One plan entry → its index entry (runs in a worker process)."""
    cv2.setNumThreads(1)  # the workers are the parallelism
    latent = generate_clip(cfg, label, speaker, np.random.default_rng(seed), out / name)
    return {"file": name, "label": label, "speaker": speaker.name, **latent}


def _write_clips(cfg: SyntheticConfig, out: Path, bar: Progress, task: Any) -> list[dict]:
    """Every clip of the plan into ``out``, over ``cfg.workers`` processes; index entries."""
    plan = clip_plan(cfg)
    if cfg.workers == 1:
        entries = []
        for item in plan:
            entries.append(_make_clip(cfg, *item, out))
            bar.advance(task)
        return entries
    # spawn, not fork: the caller may hold torch's threads, which a fork would copy broken
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.workers, mp_context=context) as pool:
        futures = [pool.submit(_make_clip, cfg, *item, out) for item in plan]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # raises a worker's error here
                    bar.advance(task)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        return [f.result() for f in futures]


def generate(cfg: SyntheticConfig) -> list[Clip]:
    """The config's clips, generating them first if the folder is missing or incomplete."""
    folder = cfg.folder()
    clips = read_index(folder)
    if clips is not None:
        return clips
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder.parent / f".{folder.name}.lock"):
        clips = read_index(folder)  # another process may have finished while we waited
        if clips is not None:
            return clips
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            total = len(EMOTIONS) * cfg.clips_per_class
            with Progress(transient=True) as bar:  # once per config: tell the user why we wait
                task = bar.add_task(f"Generating synthetic clips in {folder}", total=total)
                entries = _write_clips(cfg, tmp, bar, task)
            (tmp / INDEX_FILE).write_text(json.dumps(entries, indent=1))
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
            if folder.exists():  # incomplete leftovers of an older attempt
                stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}.stale.", dir=folder.parent))
                folder.rename(stale / "old")
                shutil.rmtree(stale)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    clips = read_index(folder)
    if clips is None:
        raise AvsentError(f"{folder}: synthetic clips were generated but cannot be read back")
    return clips


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock file, so parallel processes (e.g. DDP ranks) generate only once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic rename still keeps the folder consistent
        yield
        return
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
