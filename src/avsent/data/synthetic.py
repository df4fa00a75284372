"""The built-in default data: generated talking faces that speak with an emotion.

Each clip is a real MP4 (H.264 video + AAC audio) so it goes through exactly the decode,
face-detection and feature path a user's recordings go through. The class shows in both
modalities, but neither is enough alone:

* faces: brow angle/height, eye openness, mouth curve/opening and how much the mouth moves;
  *fear* and *surprise* look alike, and so do *angry* and *disgusted*;
* voices: pitch level, contour, tremor, loudness and syllable rate; *happy* and *surprise*
  sound alike, and so do *sad* and *disgusted*.

On top, every clip draws a face intensity and a voice intensity independently (a strong
face can come with a flat voice), and label-free variation: speaker (face colour/shape,
base pitch), head position/scale/motion, lighting, background, camera and microphone noise.

Generation is deterministic from the seed and atomic: clips are written to a temporary
folder that is renamed into place only once complete, with ``clips.json`` listing them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import av
import cv2
import numpy as np
from attrs import validators as v
from rich.progress import Progress

from avsent.contracts import Clip
from avsent.errors import AvsentError
from avsent.labels import EMOTIONS

FORMAT_VERSION = 2  #: bump when the drawing or sound changes, so old caches are not reused
INDEX_FILE = "clips.json"


def _multiple_of(n: int):
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if value % n:
            raise ValueError(f"must be a multiple of {n}, got {value}", attribute)

    return check


@attrs.define
class SyntheticConfig:
    """Size and seed of the generated set; each distinct config gets its own folder."""

    root: str = "~/.cache/avsent/synthetic"  #: parent folder; the set lives in a sub-folder
    clips_per_class: int = attrs.field(default=24, validator=v.ge(1))
    speakers: int = attrs.field(default=6, validator=v.ge(1))
    seconds: float = attrs.field(default=2.0, validator=[v.gt(0.2), v.le(30.0)])
    fps: int = attrs.field(default=25, validator=[v.ge(5), v.le(60)])
    #: frame side in pixels, a multiple of 16 (whole H.264 macroblocks)
    size: int = attrs.field(default=128, validator=[v.ge(96), v.le(512), _multiple_of(16)])
    sample_rate: int = attrs.field(default=16000, validator=v.in_((8000, 16000, 22050, 44100)))
    seed: int = attrs.field(default=0, validator=v.ge(0))
    face_noise: float = attrs.field(default=6.0, validator=v.ge(0.0))  #: pixel noise std (0-255)
    snr_db: tuple[float, float] = (8.0, 24.0)  #: audio noise, drawn per clip in this range

    def folder(self) -> Path:
        """Where this config's clips live: ``root/v<format>-<hash of the other fields>``."""
        fields = attrs.asdict(self)
        fields.pop("root")
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        return Path(self.root).expanduser() / f"v{FORMAT_VERSION}-{digest}"


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
    rate: float = 3.5  #: syllables per second
    breath: float = 0.05  #: share of aspiration noise


FACES: dict[str, FaceStyle] = {
    "sad": FaceStyle(brow_tilt=0.45, brow_raise=0.05, eye_open=-0.2, smile=-0.8, talk=0.5),
    "angry": FaceStyle(brow_tilt=-0.7, brow_raise=-0.3, eye_open=-0.35, smile=-0.25, talk=1.3),
    "surprise": FaceStyle(brow_tilt=0.1, brow_raise=0.8, eye_open=0.45, mouth_open=0.55),
    "fear": FaceStyle(brow_tilt=0.35, brow_raise=0.7, eye_open=0.45, smile=-0.2, mouth_open=0.4),
    "happy": FaceStyle(brow_raise=0.1, eye_open=-0.15, smile=0.9, mouth_open=0.25, talk=1.1),
    "disgusted": FaceStyle(
        brow_tilt=-0.6, brow_raise=-0.3, eye_open=-0.35, smile=-0.3, asymmetry=0.6
    ),
    "neutral": FaceStyle(),
}
VOICES: dict[str, VoiceStyle] = {
    "sad": VoiceStyle(pitch=0.85, slope=-0.3, energy=0.3, rate=2.5, breath=0.15),
    "angry": VoiceStyle(pitch=1.25, slope=-0.2, bounce=0.15, energy=1.0, rate=5.0),
    "surprise": VoiceStyle(pitch=1.3, slope=0.6, bounce=0.12, energy=0.8, rate=4.0),
    "fear": VoiceStyle(pitch=1.35, slope=0.1, tremor=0.06, energy=0.6, rate=5.5, breath=0.2),
    "happy": VoiceStyle(pitch=1.25, slope=0.45, bounce=0.22, energy=0.8, rate=4.2),
    "disgusted": VoiceStyle(pitch=0.88, slope=-0.3, energy=0.35, rate=2.8, breath=0.25),
    "neutral": VoiceStyle(),
}

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


def make_speakers(count: int, rng: np.random.Generator) -> list[Speaker]:
    speakers = []
    for i in range(count):
        tone = rng.uniform(0.5, 0.95)
        skin = (tone, tone * rng.uniform(0.72, 0.85), tone * rng.uniform(0.55, 0.7))
        hair_level = rng.uniform(0.05, 0.35)
        hair = (hair_level * rng.uniform(0.8, 1.3), hair_level, hair_level * rng.uniform(0.6, 1.0))
        speakers.append(
            Speaker(
                name=f"s{i + 1:02d}",
                skin=skin,
                hair=tuple(min(c, 1.0) for c in hair),
                aspect=float(rng.uniform(1.18, 1.4)),
                eye_gap=float(rng.uniform(0.34, 0.42)),
                pitch_hz=float(rng.choice([rng.uniform(95, 140), rng.uniform(170, 240)])),
            )
        )
    return speakers


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
    style: VoiceStyle,
    speaker: Speaker,
    intensity: float,
    seconds: float,
    sr: int,
    snr_db: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A voiced utterance: (float32 samples [N] in -1..1, syllable envelope [N])."""
    neutral = VoiceStyle()

    def mix(a: float, b: float) -> float:
        return b + intensity * (a - b)

    n = round(seconds * sr)
    t = np.arange(n) / sr
    rate = mix(style.rate, neutral.rate) * rng.uniform(0.85, 1.15)
    env, syl = syllable_envelope(n, sr, rate, rng)

    bounce = mix(style.bounce, neutral.bounce)
    syl_offsets = rng.normal(0, bounce, size=int(syl.max()) + 1)
    octaves = (
        mix(style.slope, neutral.slope) * (t / seconds - 0.5)
        + syl_offsets[syl]
        + intensity * style.tremor * np.sin(2 * np.pi * rng.uniform(5.5, 8.0) * t)
    )
    octaves = np.convolve(
        octaves, np.hanning(int(0.03 * sr)) / np.hanning(int(0.03 * sr)).sum(), "same"
    )
    f0 = speaker.pitch_hz * mix(style.pitch, neutral.pitch) * 2.0**octaves
    f0 *= rng.uniform(0.93, 1.07)  # label-free: the speaker's mood of the day
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

    breath = mix(style.breath, neutral.breath)
    aspiration = np.convolve(rng.normal(0, 1, n), [1, -0.6], "same") * 0.3
    speech = env * ((1 - breath) * voiced + breath * aspiration)
    speech *= mix(style.energy, neutral.energy) * rng.uniform(0.7, 1.3)

    signal_power = np.mean(speech**2) + 1e-12
    snr = rng.uniform(*snr_db)
    noise = rng.normal(0, 1, n)
    noise = np.convolve(noise, np.ones(3) / 3, "same")  # slightly coloured room noise
    noise *= math.sqrt(signal_power / 10 ** (snr / 10) / (np.mean(noise**2) + 1e-12))
    samples = speech + noise
    peak = np.abs(samples).max()
    if peak > 0.98:
        samples *= 0.98 / peak
    return samples.astype(np.float32), env


# -- video ------------------------------------------------------------------------------


SUPERSAMPLE = 2  # draw at 2× and shrink: smooth edges without per-primitive anti-aliasing


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
    a = 0.27 * s * scale  # face half-width
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
    style: FaceStyle,
    intensity: float,
    envelope: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The clip's frames [T, size, size, 3] uint8 RGB; the mouth follows ``envelope``."""
    face = FaceStyle(
        **{
            k: (1.0 + intensity * (val - 1.0)) if k == "talk" else intensity * val
            for k, val in attrs.asdict(style).items()
        }
    )
    # label-free jitter on the expression itself
    face = attrs.evolve(
        face,
        brow_raise=face.brow_raise + rng.normal(0, 0.12),
        eye_open=face.eye_open + rng.normal(0, 0.08),
        smile=face.smile + rng.normal(0, 0.15),
    )
    n_frames = round(cfg.seconds * cfg.fps)
    background = make_background(cfg.size, rng)
    center = np.array([rng.uniform(0.4, 0.6), rng.uniform(0.42, 0.58)])
    scale = rng.uniform(0.9, 1.1)
    light = (rng.uniform(-1, 1), rng.uniform(0.75, 1.2))
    drift = rng.normal(0, 0.004, size=(n_frames, 2)).cumsum(0)
    sway = rng.uniform(0.005, 0.02) * np.sin(
        2 * np.pi * rng.uniform(0.3, 1.0) * np.arange(n_frames) / cfg.fps
    )
    blink_at = rng.uniform(0, cfg.seconds)
    per_frame = len(envelope) / n_frames
    frames = np.empty((n_frames, cfg.size, cfg.size, 3), np.uint8)
    for i in range(n_frames):
        t = i / cfg.fps
        env = envelope[int(i * per_frame) : int((i + 1) * per_frame)].mean()
        frame = draw_face(
            cfg.size,
            speaker,
            face,
            center=(center[0] + drift[i, 0] + sway[i], center[1] + drift[i, 1]),
            scale=scale,
            mouth_open=max(0.0, 0.6 * face.mouth_open + 0.22 * face.talk * env),
            blink=0.15 if abs(t - blink_at) < 0.08 else 1.0,
            background=background,
            light=light,
        )
        noise = rng.standard_normal(frame.shape, dtype=np.float32) * cfg.face_noise
        frames[i] = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return frames


# -- files -------------------------------------------------------------------------------


def write_av_clip(
    path: Path, frames: np.ndarray, fps: int, samples: np.ndarray, sample_rate: int
) -> None:
    """Frames [T,H,W,3] RGB + mono float samples → MP4 (H.264 yuv420p + AAC)."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        # one thread and no macroblock-tree rate control: otherwise x264's bytes vary run to
        # run, and the feature cache (keyed by file content) would miss after a regeneration
        video.options = {
            "crf": "20",
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
) -> None:
    face_intensity = rng.uniform(0.5, 1.0)
    voice_intensity = rng.uniform(0.5, 1.0)
    samples, envelope = synthesize_voice(
        VOICES[label], speaker, voice_intensity, cfg.seconds, cfg.sample_rate, cfg.snr_db, rng
    )
    frames = render_frames(cfg, speaker, FACES[label], face_intensity, envelope, rng)
    write_av_clip(path, frames, cfg.fps, samples, cfg.sample_rate)


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


def read_index(folder: Path) -> list[Clip] | None:
    """The clips of a complete generated folder, or None when it is missing or incomplete."""
    try:
        entries = json.loads((folder / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None
    clips = [Clip(folder / e["file"], e["label"], e["speaker"]) for e in entries]
    if not all(c.path.is_file() and c.path.stat().st_size > 0 for c in clips):
        return None
    return clips


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
            entries = []
            plan = clip_plan(cfg)
            with Progress(transient=True) as bar:  # once per config: tell the user why we wait
                task = bar.add_task(f"Generating synthetic clips in {folder}", total=len(plan))
                for name, label, speaker, seed in plan:
                    generate_clip(cfg, label, speaker, np.random.default_rng(seed), tmp / name)
                    entries.append({"file": name, "label": label, "speaker": speaker.name})
                    bar.advance(task)
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
