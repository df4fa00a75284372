"""Training-time augmentation of collated batches, for every recipe.

Features come from the cache, so augmentation works on what the cache holds rather than
on waveforms. Which audio rows an option touches comes from the front-end's
:class:`~avsent.contracts.FeatureSpec` (for mel-chroma: band ``mel``, frequency rows in dB,
then ``chroma``); the video is face crops ``[B, C, T, H, W]`` in [0, 1]. An option whose
band the front-end does not have (a pitch shift on MFCCs) is refused by
:func:`check_augment` before training. What each option does:

* ``time_stretch`` — speed perturbation: each clip's real frames are resampled along time
  by linear interpolation at a rate drawn from ``[1 - s, 1 + s]``; the batch keeps its
  length (longer clips are cropped at a random offset, shorter ones padded) and the
  mask follows.
* ``pitch_shift_bins`` — the frequency rows move up or down by up to k bins (edges
  repeated). An approximation: mel bins are evenly spaced in pitch only above ~1 kHz, and
  the chroma rows are left as they are.
* ``gain_db`` — a random gain per clip, added to the dB rows only (dB is a log domain:
  a gain is an offset; chroma is loudness-free).
* ``noise_min_snr_db`` — background noise as the field adds it to waveforms, done in the
  power domain: white noise at an SNR drawn from ``[min, min + noise_snr_span_db]`` dB
  (relative to the clip's mean mel power) is added to each mel band's power. With
  librosa's area-normalised (Slaney) mel filters, white noise is flat across bands; the
  noise is taken as steady (its frame-to-frame fluctuation is left out).
* ``noise_std`` — Gaussian noise on the whole map, in units of each band's standard
  deviation (the model's normalisation statistics when given, else the batch's).
* ``freq_masks`` / ``time_masks`` — SpecAugment: spans of up to the given width replaced
  by the clip's per-band mean (zero after normalisation). Frequency masks cover the
  frequency rows only; time masks fall inside each clip's real frames.
* ``video_flip`` / ``video_crop_jitter`` — horizontal flip (p = 0.5) and a random shift of
  up to n pixels with edges repeated. Landmark geometry is not flipped with the crops.
* ``mixup_alpha`` — mixup (Zhang et al. 2018) via :func:`mixup` / :func:`mixup_loss`.
* ``modality_dropout`` — that share of clips loses one modality (audio or video, half
  each): its mask becomes all padding, so the fusion sees it as absent — the remedy
  against one branch dominating (Neverova et al.'s ModDrop) that also trains the model to
  predict from one modality (``avsent evaluate --drop``, files without a video stream).

Augmentation runs on the cache's units, before the model's global standardisation, so
``gain_db`` and ``noise_min_snr_db`` need a dB band. The per-item standardisations
(``data.utterance_norm``, ``data.speaker_norm``; :mod:`avsent.data.normalise`) come before
it — they act on whole clips, the augmenter on crops of batches — and leave the rows in
standard deviations, where "3 dB" would be a shift of three of them: :func:`check_augment`
refuses both options with either.

Every random draw comes from the caller's ``torch.Generator``, so a resumed run that
restores the generator state repeats the same augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import torch
from torch.nn import functional as F

from avsent.config import NONE
from avsent.contracts import FeatureSpec
from avsent.data.normalise import item_modes
from avsent.errors import ConfigError
from avsent.model import Batch, audio_feature_spec
from avsent.run_config import AugmentConfig

#: option → (the band property it needs, what it does to those rows)
_BAND_OPTIONS: dict[str, tuple[str, str]] = {
    "pitch_shift_bins": ("frequency", "shifts frequency rows"),
    "freq_masks": ("frequency", "masks frequency rows"),
    "gain_db": ("db", "adds a gain in dB"),
    "noise_min_snr_db": ("db", "adds noise to dB levels"),
}


def _option_on(aug: AugmentConfig, option: str) -> bool:
    value = getattr(aug, option)
    return value is not None and value != 0


def check_augment(config: Any) -> None:
    """Refuse augmentations the audio features cannot take, before any training.

    Each option acts on the band its :class:`FeatureSpec` marks (frequency rows, dB rows);
    a front-end without such a band, or a per-item standardisation (``data.utterance_norm``,
    ``data.speaker_norm``: they turn dB into standard deviations before the batch is
    augmented), refuses it."""
    if config.audio.name == NONE:
        return
    aug = config.train.augment
    spec = audio_feature_spec(config)
    frontend = config.audio_frontend.name
    standardised = item_modes(config)
    for option, (needs, what) in _BAND_OPTIONS.items():
        if not _option_on(aug, option):
            continue
        if spec.first(**{needs: True}) is None:
            raise ConfigError(
                f"train.augment.{option}",
                f"{what}, but front-end {frontend!r} has no {needs} band "
                f"(its bands: {', '.join(b.name for b in spec.bands)}); set it to 0 / leave "
                "it unset for this front-end",
            )
        if needs == "db" and standardised:
            raise ConfigError(
                f"train.augment.{option}",
                f"{what}, but {standardised[0]} standardises the features first, so dB "
                "would be standard deviations; turn one of them off (noise_std works in "
                "standard deviations)",
            )


def augment_batch(
    batch: Batch,
    cfg: AugmentConfig,
    generator: torch.Generator,
    *,
    spec: FeatureSpec | None = None,
    feature_std: torch.Tensor | None = None,
) -> Batch:
    """A new batch with the configured augmentations; the input is not modified.

    ``spec`` says which audio rows are frequency bins and which are dB (needed when the
    batch has audio). A batch without ``audio_mask`` comes back with one (time stretching
    shortens clips). ``feature_std`` [F] (e.g. ``model.audio_std``) sets the noise scale.
    """
    audio, audio_mask = batch.audio, batch.audio_mask
    if audio is not None and cfg.audio_active:
        if audio_mask is None:
            audio_mask = torch.ones(audio.shape[0], audio.shape[2], dtype=torch.bool)
            audio_mask = audio_mask.to(audio.device)
        if spec is None or spec.rows != audio.shape[1]:
            raise ValueError(
                f"augmenting audio of {audio.shape[1]} rows needs its FeatureSpec, got {spec}"
            )
        audio, audio_mask = _augment_audio(audio, audio_mask, cfg, generator, spec, feature_std)
    video = batch.video
    if video is not None and cfg.video_active:
        video = _augment_video(video, cfg, generator)
    out = attrs.evolve(batch, audio=audio, audio_mask=audio_mask, video=video)
    if cfg.modality_dropout > 0 and audio is not None and video is not None:
        out = drop_modalities(out, cfg.modality_dropout, generator)
    return out


def drop_modalities(batch: Batch, share: float, generator: torch.Generator) -> Batch:
    """``batch`` with one modality of about ``share`` of its clips masked out (never both)."""
    n = batch.size
    draw = torch.rand(n, generator=generator, device=generator.device).cpu()
    which = torch.rand(n, generator=generator, device=generator.device).cpu() < 0.5
    dropped = draw < share
    audio_mask = batch.audio_mask
    if audio_mask is None:
        audio_mask = torch.ones(n, batch.audio.shape[2], dtype=torch.bool)
    video_mask = batch.video_mask
    if video_mask is None:
        video_mask = torch.ones(n, batch.video.shape[2], dtype=torch.bool)
    keep_audio = ~(dropped & which).to(audio_mask.device)
    keep_video = ~(dropped & ~which).to(video_mask.device)
    return attrs.evolve(
        batch,
        audio_mask=audio_mask & keep_audio[:, None],
        video_mask=video_mask & keep_video[:, None],
    )


def mixup(
    batch: Batch, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[Batch, torch.Tensor, torch.Tensor, float]:
    """Mix each clip with another of the batch: ``lam·x + (1 − lam)·x[perm]``.

    ``lam`` ~ Beta(alpha, alpha). Masks are the union of the two clips' masks (a padded
    step mixed with a real one counts as real). Train with :func:`mixup_loss`.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    # torch's Beta sampler takes no generator: seed numpy's from ours instead
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(batch.size, generator=generator, device=generator.device)
    perm = perm.to(targets.device)

    def mix(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else lam * t + (1.0 - lam) * t[perm.to(t.device)]

    def union(m: torch.Tensor | None) -> torch.Tensor | None:
        return None if m is None else m | m[perm.to(m.device)]

    mixed = attrs.evolve(
        batch,
        audio=mix(batch.audio),
        audio_mask=union(batch.audio_mask),
        video=mix(batch.video),
        video_mask=union(batch.video_mask),
        geometry=mix(batch.geometry),
        targets=targets,
    )
    return mixed, targets, targets[perm], lam


def mixup_loss(
    logits: torch.Tensor,
    targets_a: torch.Tensor,
    targets_b: torch.Tensor,
    lam: float,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The loss of a mixed batch: the same mixture of the losses against both targets."""
    return lam * criterion(logits, targets_a) + (1.0 - lam) * criterion(logits, targets_b)


# -- audio ---------------------------------------------------------------------------


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=g.device).cpu()


def _randint(n: int, low: int, high: int, g: torch.Generator) -> torch.Tensor:
    """``n`` integers in [low, high] inclusive, on the CPU."""
    return torch.randint(low, high + 1, (n,), generator=g, device=g.device).cpu()


def _rows(spec: FeatureSpec, option: str, **needs: bool) -> slice:
    band = spec.first(**needs)
    if band is None:  # check_augment refuses this before training
        raise ConfigError(f"train.augment.{option}", f"the features have no {needs} band")
    return band.rows


def _augment_audio(
    x: torch.Tensor,
    mask: torch.Tensor,
    cfg: AugmentConfig,
    g: torch.Generator,
    spec: FeatureSpec,
    feature_std: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone()
    if cfg.time_stretch:
        x, mask = _time_stretch(x, mask, cfg.time_stretch, g)
    if cfg.pitch_shift_bins:
        rows = _rows(spec, "pitch_shift_bins", frequency=True)
        x[:, rows] = _shift_rows(x[:, rows], cfg.pitch_shift_bins, g)
    if cfg.gain_db:
        rows = _rows(spec, "gain_db", db=True)
        gain = _uniform(x.shape[0], -cfg.gain_db, cfg.gain_db, g).to(x)
        x[:, rows] += gain[:, None, None] * mask[:, None, :]
    if cfg.noise_min_snr_db is not None:
        rows = _rows(spec, "noise_min_snr_db", db=True)
        x[:, rows] = _add_noise_floor(x[:, rows], mask, cfg, g)
    if cfg.noise_std:
        std = feature_std.to(x) if feature_std is not None else _band_std(x, mask)
        noise = torch.randn(x.shape, generator=g, device=g.device).to(x)
        x += cfg.noise_std * noise * std.view(1, -1, 1) * mask[:, None, :]
    if cfg.freq_masks or cfg.time_masks:
        fill = _band_mean(x, mask)  # [B, F, 1]
        lengths = mask.sum(1).cpu()
        freq = _rows(spec, "freq_masks", frequency=True) if cfg.freq_masks else slice(0, 0)
        for b in range(x.shape[0]):
            for _ in range(cfg.freq_masks):
                start, width = _span(freq.stop - freq.start, cfg.freq_mask_width, g)
                start += freq.start
                x[b, start : start + width] = fill[b, start : start + width]
            for _ in range(cfg.time_masks):
                start, width = _span(int(lengths[b]), cfg.time_mask_width, g)
                x[b, :, start : start + width] = fill[b]
    return x, mask


def _add_noise_floor(
    mel_db: torch.Tensor, mask: torch.Tensor, cfg: AugmentConfig, g: torch.Generator
) -> torch.Tensor:
    """dB mel rows plus white noise at a random SNR per clip, summed as powers."""
    low = float(cfg.noise_min_snr_db)
    snr_db = _uniform(mel_db.shape[0], low, low + cfg.noise_snr_span_db, g).to(mel_db)
    power = torch.pow(10.0, mel_db.double() / 10.0)
    w = mask[:, None, :].to(power)
    signal = (power * w).sum((1, 2)) / (w.sum((1, 2)) * mel_db.shape[1]).clamp_min(1.0)
    noise = signal * torch.pow(10.0, -snr_db.double() / 10.0)  # [B]
    noisy = 10.0 * torch.log10(power + noise[:, None, None])
    return torch.where(mask[:, None, :], noisy.to(mel_db), mel_db)


def _band_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-clip, per-band mean over real frames → [B, F, 1]."""
    w = mask[:, None, :].to(x)
    return (x * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp_min(1.0)


def _band_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-band std over every real frame of the batch → [F]."""
    real = x.transpose(1, 2)[mask]  # [N, F]
    return real.std(0) if real.shape[0] > 1 else torch.ones(x.shape[1]).to(x)


def _span(length: int, max_width: int, g: torch.Generator) -> tuple[int, int]:
    """A random span [start, start + width) inside [0, length); width may be 0."""
    if length <= 0:
        return 0, 0
    width = int(_randint(1, 0, min(max_width, length), g))
    start = int(_randint(1, 0, length - width, g))
    return start, width


def _shift_rows(mel: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Shift each clip's rows by a random amount in [-k, k], repeating the edge row."""
    shifts = _randint(mel.shape[0], -k, k, g)
    rows = mel.shape[1]
    out = torch.empty_like(mel)
    for b, s in enumerate(shifts.tolist()):
        index = (torch.arange(rows) - s).clamp(0, rows - 1).to(mel.device)
        out[b] = mel[b, index]
    return out


def _time_stretch(
    x: torch.Tensor, mask: torch.Tensor, amount: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample each clip's real frames by a rate in [1 − amount, 1 + amount]."""
    batch, _, frames = x.shape
    rates = _uniform(batch, 1.0 - amount, 1.0 + amount, g)
    out = torch.zeros_like(x)
    new_mask = torch.zeros_like(mask)
    lengths = mask.sum(1).cpu()
    for b in range(batch):
        length = int(lengths[b])
        if length < 2:
            out[b], new_mask[b] = x[b], mask[b]
            continue
        real = x[b : b + 1, :, mask[b]]
        stretched_len = max(2, round(length / float(rates[b])))
        stretched = F.interpolate(real, size=stretched_len, mode="linear", align_corners=True)[0]
        offset = int(_randint(1, 0, max(0, stretched_len - frames), g))
        kept = stretched[:, offset : offset + frames]
        out[b, :, : kept.shape[1]] = kept
        new_mask[b, : kept.shape[1]] = True
    return out, new_mask


# -- video ---------------------------------------------------------------------------


def _augment_video(video: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Flip and shift each clip's crops (the same for all its frames)."""
    video = video.clone()
    batch = video.shape[0]
    if cfg.video_flip:
        flip = _randint(batch, 0, 1, g).bool()
        video[flip.to(video.device)] = video[flip.to(video.device)].flip(-1)
    j = cfg.video_crop_jitter
    if j:
        height, width = video.shape[-2:]
        padded = F.pad(video, (j, j, j, j, 0, 0), mode="replicate")
        offsets = _randint(2 * batch, 0, 2 * j, g).view(batch, 2).tolist()
        for b, (dy, dx) in enumerate(offsets):
            video[b] = padded[b, :, :, dy : dy + height, dx : dx + width]
    return video
