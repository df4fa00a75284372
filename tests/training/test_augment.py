"""Augmentation keeps shapes and masks, is deterministic, and touches only what it should."""

from __future__ import annotations

import attrs
import pytest
import torch

from avsent.config import from_dict, to_dict
from avsent.contracts import Band, FeatureSpec
from avsent.errors import ConfigError
from avsent.hookspecs import hookimpl
from avsent.model import Batch
from avsent.registry import get_registry
from avsent.training.augment import AugmentConfig, augment_batch, mixup, mixup_loss

N_MELS, CHROMA, FRAMES = 20, 12, 40
#: the mel-chroma layout at 20 mel rows (what MelChroma.describe says for n_mels = 20)
SPEC = FeatureSpec(
    bands=(
        Band("mel", 0, N_MELS, frequency=True, db=True),
        Band("chroma", N_MELS, N_MELS + CHROMA),
    ),
    frames_per_second=43.0,
)


def augment(batch: Batch, cfg: AugmentConfig, g: torch.Generator, **kwargs) -> Batch:
    return augment_batch(batch, cfg, g, spec=SPEC, **kwargs)


def make_batch(lengths=(40, 25, 32)) -> Batch:
    torch.manual_seed(0)
    b = len(lengths)
    audio = torch.randn(b, N_MELS + CHROMA, FRAMES) * 10 - 40
    mask = torch.zeros(b, FRAMES, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
        audio[i, :, n:] = 0.0
    return Batch(
        audio=audio,
        audio_mask=mask,
        video=torch.rand(b, 3, 4, 16, 16),
        video_mask=torch.ones(b, 4, dtype=torch.bool),
        geometry=torch.randn(b, 4, 5),
        targets=torch.tensor([0, 1, 2][:b]),
    )


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def only(**options) -> AugmentConfig:
    """A config with just ``options`` on (the defaults switch a light set on)."""
    off = {"time_masks": 0, "freq_masks": 0, "video_flip": False, "video_crop_jitter": 0}
    return AugmentConfig(**{**off, **options})


ALL_ON = AugmentConfig(
    noise_min_snr_db=10.0,
    noise_std=0.1,
    gain_db=6.0,
    time_masks=2,
    time_mask_width=5,
    freq_masks=2,
    freq_mask_width=4,
    time_stretch=0.2,
    pitch_shift_bins=2,
    mixup_alpha=0.4,
    video_flip=True,
    video_crop_jitter=3,
)


def test_switched_off_changes_nothing():
    batch = make_batch()
    cfg = only()
    assert not cfg.active
    out = augment(batch, cfg, gen())
    assert torch.equal(out.audio, batch.audio)
    assert torch.equal(out.video, batch.video)


def test_defaults_are_the_light_set():
    cfg = AugmentConfig()
    assert cfg.time_masks and cfg.freq_masks and cfg.video_flip and cfg.video_crop_jitter
    assert not (cfg.gain_db or cfg.noise_std or cfg.time_stretch or cfg.mixup_alpha)


def test_config_round_trips_and_validates():
    assert from_dict(AugmentConfig, to_dict(ALL_ON)) == ALL_ON
    with pytest.raises(ConfigError, match="time_stretch"):
        from_dict(AugmentConfig, {"time_stretch": 1.5})
    with pytest.raises(ConfigError, match="noise_std"):
        from_dict(AugmentConfig, {"noise_std": -1.0})


def test_all_options_keep_shapes_and_input_untouched():
    batch = make_batch()
    before = attrs.evolve(batch, audio=batch.audio.clone(), video=batch.video.clone())
    out = augment(batch, ALL_ON, gen())
    assert out.audio.shape == batch.audio.shape
    assert out.audio_mask.shape == batch.audio_mask.shape
    assert out.video.shape == batch.video.shape
    assert torch.equal(batch.audio, before.audio) and torch.equal(batch.video, before.video)
    assert torch.isfinite(out.audio).all()
    assert not torch.equal(out.audio, batch.audio)


def test_same_generator_state_same_result():
    batch = make_batch()
    a = augment(batch, ALL_ON, gen(7))
    b = augment(batch, ALL_ON, gen(7))
    c = augment(batch, ALL_ON, gen(8))
    assert torch.equal(a.audio, b.audio) and torch.equal(a.video, b.video)
    assert torch.equal(a.audio_mask, b.audio_mask)
    assert not torch.equal(a.audio, c.audio)


def test_gain_moves_only_mel_rows_by_one_offset_per_clip():
    batch = make_batch()
    out = augment(batch, only(gain_db=6.0), gen())
    diff = out.audio - batch.audio
    assert torch.equal(diff[:, N_MELS:], torch.zeros_like(diff[:, N_MELS:]))
    for i in range(3):
        real = diff[i, :N_MELS, batch.audio_mask[i]]
        assert torch.allclose(real, real[0, 0].expand_as(real), atol=1e-4)
        assert 0 < abs(float(real[0, 0])) <= 6.0
        assert torch.equal(
            diff[i, :, ~batch.audio_mask[i]], torch.zeros_like(diff[i, :, ~batch.audio_mask[i]])
        )


def test_time_masks_replace_spans_with_the_band_mean_inside_real_frames():
    batch = make_batch()
    cfg = only(time_masks=1, time_mask_width=8)
    out = augment(batch, cfg, gen(3))
    changed_any = False
    for i in range(3):
        n = int(batch.audio_mask[i].sum())
        cols = (out.audio[i] != batch.audio[i]).any(0).nonzero().flatten()
        assert (cols < n).all(), "a time mask fell on padding"
        if len(cols):
            changed_any = True
            assert int(cols.max() - cols.min()) + 1 <= 8
            mean = batch.audio[i, :, :n].mean(1)
            assert torch.allclose(out.audio[i, :, cols], mean[:, None].expand(-1, len(cols)))
    assert changed_any


def test_freq_masks_cover_mel_rows_only():
    batch = make_batch()
    out = augment(batch, only(freq_masks=3, freq_mask_width=5), gen(2))
    rows = (out.audio != batch.audio).any(2).any(0).nonzero().flatten()
    assert len(rows) > 0
    assert (rows < N_MELS).all()
    assert torch.equal(out.audio_mask, batch.audio_mask)


def test_time_stretch_keeps_mask_consistent_with_content():
    batch = make_batch(lengths=(40, 20, 30))
    out = augment(batch, only(time_stretch=0.3), gen(5))
    assert out.audio.shape == batch.audio.shape
    lengths = out.audio_mask.sum(1)
    assert not torch.equal(lengths, batch.audio_mask.sum(1))
    for i in range(3):
        n = int(lengths[i])
        assert out.audio_mask[i, :n].all() and not out.audio_mask[i, n:].any()
        assert torch.equal(out.audio[i, :, n:], torch.zeros_like(out.audio[i, :, n:]))
        # linear interpolation stays within the clip's own value range
        real = batch.audio[i, :, batch.audio_mask[i]]
        assert out.audio[i, :, :n].max() <= real.max() + 1e-4
        assert out.audio[i, :, :n].min() >= real.min() - 1e-4


def test_a_batch_without_audio_mask_gets_one_that_follows_the_stretch():
    batch = attrs.evolve(make_batch(lengths=(40, 40, 40)), audio_mask=None)
    out = augment(batch, only(time_stretch=0.3), gen(5))
    lengths = out.audio_mask.sum(1)
    assert (lengths <= FRAMES).all() and (lengths < FRAMES).any()


def test_pitch_shift_moves_mel_rows_and_keeps_chroma():
    batch = make_batch()
    out = augment(batch, only(pitch_shift_bins=3), gen(4))
    assert torch.equal(out.audio[:, N_MELS:], batch.audio[:, N_MELS:])
    found = []
    for i in range(3):
        matches = [
            s
            for s in range(-3, 4)
            if torch.equal(
                out.audio[i, max(s, 0) : N_MELS + min(s, 0)],
                batch.audio[i, max(-s, 0) : N_MELS - max(s, 0)],
            )
        ]
        assert matches, f"clip {i} is not a row shift of the input"
        found.append(matches)
    assert any(0 not in m for m in found), "no clip was shifted"


def test_noise_uses_the_given_band_scale_and_spares_padding():
    batch = make_batch()
    std = torch.ones(N_MELS + CHROMA)
    std[N_MELS:] = 0.0
    out = augment(batch, only(noise_std=0.5), gen(), feature_std=std)
    diff = out.audio - batch.audio
    assert torch.equal(diff[:, N_MELS:], torch.zeros_like(diff[:, N_MELS:]))
    assert 0.3 < float(diff[0, :N_MELS].std()) < 0.7
    assert torch.equal(diff[1, :, 25:], torch.zeros_like(diff[1, :, 25:]))


def test_background_noise_raises_quiet_bins_to_a_floor_at_the_snr():
    batch = make_batch(lengths=(40, 25, 32))
    mel = batch.audio[:, :N_MELS]
    mel[:, :, :] = -80.0  # quiet everywhere...
    mel[:, 0, :] = 0.0  # ...but one loud band: mean power 1/N_MELS (−13 dB)
    cfg = only(noise_min_snr_db=20.0, noise_snr_span_db=0.0)
    out = augment(batch, cfg, gen())
    floor = 10 * torch.log10(torch.tensor(1.0 / N_MELS)) - 20.0  # −33 dB
    for i, n in enumerate((40, 25, 32)):
        assert torch.allclose(out.audio[i, 1:N_MELS, :n], floor, atol=0.01)
        assert torch.allclose(out.audio[i, 0, :n], torch.tensor(0.0), atol=0.01)
        assert torch.equal(out.audio[i, :, n:], batch.audio[i, :, n:])
    assert torch.equal(out.audio[:, N_MELS:], batch.audio[:, N_MELS:])
    assert (out.audio >= batch.audio - 1e-4).all()


def test_video_flip_and_jitter():
    batch = make_batch()
    flipped = augment(batch, only(video_flip=True), gen(0))
    for i in range(3):
        same = torch.equal(flipped.video[i], batch.video[i])
        mirrored = torch.equal(flipped.video[i], batch.video[i].flip(-1))
        assert same or mirrored
    jittered = augment(batch, only(video_crop_jitter=2), gen(0))
    assert jittered.video.shape == batch.video.shape
    # a shift by (dy, dx) in [-2, 2]: the interior matches a shifted window of the input
    for i in range(3):
        found = any(
            torch.equal(
                jittered.video[i, ..., 2:-2, 2:-2],
                batch.video[i, ..., 2 + dy : 14 + dy, 2 + dx : 14 + dx],
            )
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )
        assert found


def test_mixup_is_a_convex_combination_with_permuted_partner():
    batch = make_batch()
    mixed, ta, tb, lam = mixup(batch, batch.targets, 0.4, gen(9))
    assert 0.0 <= lam <= 1.0
    assert torch.equal(ta, batch.targets)
    perm = [int((batch.targets == t).nonzero()) for t in tb]  # targets are distinct here
    for name in ("audio", "video", "geometry"):
        x = getattr(batch, name)
        assert torch.allclose(getattr(mixed, name), lam * x + (1 - lam) * x[perm], atol=1e-5)
    assert torch.equal(mixed.audio_mask, batch.audio_mask | batch.audio_mask[perm])
    again = mixup(batch, batch.targets, 0.4, gen(9))
    assert again[3] == lam and torch.equal(again[2], tb)
    with pytest.raises(ValueError, match="alpha"):
        mixup(batch, batch.targets, 0.0, gen())


def test_mixup_loss_mixes_the_two_losses():
    logits = torch.randn(4, 3)
    ta, tb = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2])
    ce = torch.nn.CrossEntropyLoss()
    loss = mixup_loss(logits, ta, tb, 0.3, ce)
    assert torch.allclose(loss, 0.3 * ce(logits, ta) + 0.7 * ce(logits, tb))
    assert torch.allclose(mixup_loss(logits, ta, tb, 1.0, ce), ce(logits, ta))


@pytest.mark.parametrize(("field", "value"), [("gain_db", 3.0), ("noise_min_snr_db", 10.0)])
@pytest.mark.parametrize("standardiser", ["data.speaker_norm", "data.utterance_norm"])
def test_db_augmentations_are_refused_on_standardised_features(field, value, standardiser):
    from avsent.run_config import default_run_config
    from avsent.training.augment import check_augment

    on = {standardiser: True}
    check_augment(default_run_config("drsn-audio", on))  # the default augmentations are unit-free
    with pytest.raises(ConfigError, match=f"train.augment.{field}: .*{standardiser} standardises"):
        check_augment(default_run_config("drsn-audio", {**on, f"train.augment.{field}": value}))
    check_augment(default_run_config("drsn-audio", {f"train.augment.{field}": value}))
    # a model without audio is not affected
    check_augment(default_run_config("i3dd-visual", {**on, f"train.augment.{field}": value}))


def test_training_checks_augmentation_before_anything_else(tmp_path):
    from avsent.run_config import default_run_config
    from avsent.training.trainer import train

    config = default_run_config(
        "drsn-audio", {"data.speaker_norm": True, "train.augment.gain_db": 6.0}
    )
    with pytest.raises(ConfigError, match="gain in dB, but data.speaker_norm standardises"):
        train(config, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder or data


class MFCCLike:
    """A front-end with another layout: 13 cepstral rows, neither frequency bins nor dB."""

    sample_rate = 16000

    @staticmethod
    def describe(config) -> FeatureSpec:
        return FeatureSpec(bands=(Band("mfcc", 0, 13),), frames_per_second=100.0)

    def __init__(self) -> None:
        self.spec = self.describe(None)

    def __call__(self, samples):
        return torch.zeros(13, 1 + len(samples) // 160).numpy()


class MFCCPlugin:
    @hookimpl
    def register_audio_frontends(self, register):
        register.audio_frontend("mfcc-like", MFCCLike)


@pytest.fixture
def mfcc_frontend():
    registry = get_registry()
    assert registry.register_plugin(MFCCPlugin(), name="mfcc-like-test")
    try:
        yield
    finally:
        registry.unregister_plugin("mfcc-like-test")


@pytest.mark.parametrize(
    ("field", "value"),
    [("freq_masks", 2), ("pitch_shift_bins", 2), ("gain_db", 3.0), ("noise_min_snr_db", 10.0)],
)
def test_another_layout_is_refused_what_it_cannot_take(mfcc_frontend, field, value):
    from avsent.run_config import default_run_config
    from avsent.training.augment import check_augment

    off = {"train.augment.freq_masks": 0, "audio_frontend.name": "mfcc-like"}
    check_augment(default_run_config("drsn-audio", off))  # time masks, flips: fine
    with pytest.raises(ConfigError, match=f"train.augment.{field}: .*'mfcc-like' has no"):
        check_augment(default_run_config("drsn-audio", {**off, f"train.augment.{field}": value}))


def test_another_layout_gets_the_augmentations_it_can_take(mfcc_frontend):
    """Time masks on a 13-row MFCC-like map: every row masked at the same frames, inside
    each clip's real frames; nothing reads a mel/chroma split that is not there."""
    from avsent.model import audio_feature_spec
    from avsent.run_config import default_run_config

    config = default_run_config(
        "drsn-audio", {"audio_frontend.name": "mfcc-like", "train.augment.freq_masks": 0}
    )
    spec = audio_feature_spec(config)
    assert spec.rows == 13
    batch = make_batch()
    batch = attrs.evolve(batch, audio=batch.audio[:, :13] + 100.0)
    out = augment_batch(batch, only(time_masks=2, time_mask_width=5), gen(3), spec=spec)
    changed = (out.audio != batch.audio).any(dim=1)  # [B, T] frames touched
    assert changed.any()
    assert not (changed & ~batch.audio_mask).any()
    touched = out.audio != batch.audio
    assert torch.equal(touched, changed[:, None, :].expand_as(touched))
    with pytest.raises(ValueError, match="needs its FeatureSpec"):
        augment_batch(batch, only(time_masks=1), gen(), spec=SPEC)  # 32 rows ≠ 13


def test_modality_dropout_removes_one_modality_of_some_clips():
    torch.manual_seed(0)
    n = 400
    batch = Batch(
        audio=torch.randn(n, N_MELS + CHROMA, 10),
        audio_mask=torch.ones(n, 10, dtype=torch.bool),
        video=torch.rand(n, 3, 4, 8, 8),
        video_mask=torch.ones(n, 4, dtype=torch.bool),
        targets=torch.zeros(n, dtype=torch.long),
    )
    out = augment(batch, only(modality_dropout=0.5), gen(2))
    no_audio = ~out.audio_mask.any(1)
    no_video = ~out.video_mask.any(1)
    assert not (no_audio & no_video).any()  # never both
    assert (out.audio_mask.all(1) | no_audio).all() and (out.video_mask.all(1) | no_video).all()
    share = (no_audio | no_video).float().mean().item()
    assert 0.4 < share < 0.6 and no_audio.any() and no_video.any()
    assert torch.equal(out.audio, batch.audio)  # only masks change
    audio_only = attrs.evolve(batch, video=None, video_mask=None)
    assert torch.equal(
        augment(audio_only, only(modality_dropout=1.0), gen()).audio_mask, batch.audio_mask
    )  # one modality: nothing to drop
