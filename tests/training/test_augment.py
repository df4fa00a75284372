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


# -- bands apart, exact arithmetic, the draws' ranges, the edges ---------------------------

#: a layout where the frequency rows and the dB rows are different bands, neither first
APART = FeatureSpec(
    bands=(
        Band("other", 0, 2),
        Band("bins", 2, 22, frequency=True),
        Band("level", 22, 25, db=True),
    ),
    frames_per_second=43.0,
)


def apart_batch(n: int = 3, frames: int = 30, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        audio=torch.randn(n, APART.rows, frames, generator=g) * 10 - 40,
        audio_mask=torch.ones(n, frames, dtype=torch.bool),
        targets=torch.zeros(n, dtype=torch.long),
    )


@pytest.mark.parametrize(
    ("options", "rows"),
    [
        ({"pitch_shift_bins": 3}, slice(2, 22)),
        ({"freq_masks": 6, "freq_mask_width": 8}, slice(2, 22)),
        ({"gain_db": 6.0}, slice(22, 25)),
        ({"noise_min_snr_db": 0.0}, slice(22, 25)),
    ],
)
def test_each_band_option_touches_its_band_and_nothing_else(options, rows):
    batch = apart_batch(n=8)
    out = augment_batch(batch, only(**options), gen(3), spec=APART)
    outside = torch.ones(APART.rows, dtype=torch.bool)
    outside[rows] = False
    assert torch.equal(out.audio[:, outside], batch.audio[:, outside])
    assert not torch.equal(out.audio[:, rows], batch.audio[:, rows])


@pytest.mark.parametrize(
    ("option", "value", "needs"),
    [
        ("pitch_shift_bins", 2, {"frequency": True}),
        ("freq_masks", 1, {"frequency": True}),
        ("gain_db", 3.0, {"db": True}),
        ("noise_min_snr_db", 10.0, {"db": True}),
    ],
)
def test_a_band_option_without_its_band_names_the_option(option, value, needs):
    spec = FeatureSpec(bands=(Band("mfcc", 0, 13),), frames_per_second=100.0)
    batch = attrs.evolve(apart_batch(), audio=apart_batch().audio[:, :13])
    with pytest.raises(ConfigError) as info:
        augment_batch(batch, only(**{option: value}), gen(), spec=spec)
    assert info.value.field == f"train.augment.{option}"
    assert info.value.problem == f"the features have no {needs} band"


def test_a_batch_without_a_spec_is_refused_with_its_row_count():
    with pytest.raises(ValueError) as info:
        augment_batch(make_batch(), only(gain_db=1.0), gen())
    assert str(info.value) == "augmenting audio of 32 rows needs its FeatureSpec, got None"


def test_gains_are_the_generators_draws_in_plus_minus_the_range():
    batch = apart_batch(n=16)
    out = augment_batch(batch, only(gain_db=6.0), gen(5), spec=APART)
    drawn = -6.0 + 12.0 * torch.rand(16, generator=gen(5))  # the first draws of the generator
    offsets = (out.audio - batch.audio)[:, 22, 0]
    torch.testing.assert_close(offsets, drawn)
    assert (offsets < 0).any() and (offsets > 0).any()


def test_background_noise_is_added_as_power_at_the_drawn_snr():
    """Worked in numpy: 10·log10(P + P̄·10^(−SNR/10)), P̄ the clip's mean power over its
    real frames and dB rows; one 1-row band and a 1-frame clip take the same rule."""
    import numpy as np

    spec = FeatureSpec(bands=(Band("level", 0, 1, db=True), Band("x", 1, 3)), frames_per_second=1)
    audio = torch.tensor(
        [[[-10.0, -20.0, -30.0, 5.0]] * 3, [[-3.0, 99.0, 99.0, 99.0]] * 3]
    )  # [2, 3, 4]
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    batch = Batch(audio=audio, audio_mask=mask, targets=torch.zeros(2, dtype=torch.long))
    out = augment_batch(
        batch, only(noise_min_snr_db=5.0, noise_snr_span_db=10.0), gen(6), spec=spec
    )
    snr = 5.0 + 10.0 * torch.rand(2, generator=gen(6)).double().numpy()
    for b, n in enumerate((3, 1)):
        power = 10.0 ** (audio[b, 0, :n].double().numpy() / 10.0)
        noise = power.mean() * 10.0 ** (-snr[b] / 10.0)
        expected = 10.0 * np.log10(power + noise)
        np.testing.assert_allclose(out.audio[b, 0, :n].numpy(), expected, rtol=1e-5)
        assert torch.equal(out.audio[b, 0, n:], audio[b, 0, n:])  # padding untouched
    assert torch.equal(out.audio[:, 1:], audio[:, 1:])


def test_noise_without_a_given_scale_uses_each_bands_std_over_real_frames():
    batch = apart_batch(n=2, frames=6)
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])
    batch = attrs.evolve(batch, audio_mask=mask)
    out = augment_batch(batch, only(noise_std=0.5), gen(8), spec=APART)
    real = batch.audio.transpose(1, 2)[mask]  # [8, F]
    noise = torch.randn(batch.audio.shape, generator=gen(8))
    expected = batch.audio + 0.5 * noise * real.std(0).view(1, -1, 1) * mask[:, None, :]
    torch.testing.assert_close(out.audio, expected)


@pytest.mark.parametrize("frames", [1, 2])
def test_noise_on_one_real_frame_uses_unit_scale_and_two_use_their_std(frames):
    batch = apart_batch(n=1, frames=4)
    mask = torch.tensor([[True] * frames + [False] * (4 - frames)])
    batch = attrs.evolve(batch, audio_mask=mask)
    out = augment_batch(batch, only(noise_std=1.0), gen(2), spec=APART)
    real = batch.audio[0, :, :frames].T
    scale = torch.ones(APART.rows) if frames == 1 else real.std(0)
    noise = torch.randn(batch.audio.shape, generator=gen(2))
    expected = batch.audio + noise * scale.view(1, -1, 1) * mask[:, None, :]
    torch.testing.assert_close(out.audio, expected)


def test_masks_on_a_one_frame_clip_fill_it_with_itself_and_spare_an_empty_clip():
    audio = torch.randn(2, APART.rows, 5) + 50.0  # padding is far from any mean
    mask = torch.tensor([[True, False, False, False, False], [False] * 5])
    batch = Batch(audio=audio, audio_mask=mask, targets=torch.zeros(2, dtype=torch.long))
    out = augment_batch(batch, only(time_masks=4, time_mask_width=3), gen(1), spec=APART)
    assert torch.equal(out.audio, audio)


def test_mask_spans_reach_every_width_and_both_ends():
    batch = apart_batch(n=200, frames=10)
    out = augment_batch(batch, only(time_masks=1, time_mask_width=3), gen(4), spec=APART)
    changed = (out.audio != batch.audio).any(1)  # [B, T]
    widths = changed.sum(1)
    assert set(widths.tolist()) == {0, 1, 2, 3}
    assert changed[:, 0].any() and changed[:, -1].any()


def test_pitch_shifts_go_both_ways_and_repeat_the_edge_rows():
    batch = apart_batch(n=60)
    out = augment_batch(batch, only(pitch_shift_bins=2), gen(5), spec=APART)
    bins_in, bins_out = batch.audio[:, 2:22], out.audio[:, 2:22]
    seen = set()
    for b in range(60):
        for s in range(-2, 3):
            index = (torch.arange(20) - s).clamp(0, 19)
            if torch.equal(bins_out[b], bins_in[b, index]):
                seen.add(s)
                break
        else:
            raise AssertionError(f"clip {b} is not an edge-repeating shift of its rows")
    assert seen == {-2, -1, 0, 1, 2}


def _stretched_lengths(amount: float, length: int, n: int = 400, frames: int = 40) -> set[int]:
    mask = torch.zeros(n, frames, dtype=torch.bool)
    mask[:, :length] = True
    batch = attrs.evolve(apart_batch(n=n, frames=frames), audio_mask=mask)
    out = augment_batch(batch, only(time_stretch=amount), gen(7), spec=APART)
    return set(out.audio_mask.sum(1).tolist())


def test_stretch_rates_span_one_minus_to_one_plus_the_amount():
    # 20 frames at a rate in [0.8, 1.2]: round(20 / rate) in [17, 25]
    assert _stretched_lengths(0.2, 20) == set(range(17, 26))


def test_a_two_frame_clip_is_stretched_and_never_below_two_frames():
    assert _stretched_lengths(0.1, 2) == {2}
    assert _stretched_lengths(0.5, 2) == {2, 3, 4}


def test_stretching_resamples_a_ramp_end_to_end_from_its_first_frame():
    frames, length = 40, 20
    ramp = torch.arange(frames, dtype=torch.float32).expand(APART.rows, frames)
    mask = torch.zeros(6, frames, dtype=torch.bool)
    mask[:, :length] = True
    batch = Batch(
        audio=ramp.repeat(6, 1, 1), audio_mask=mask, targets=torch.zeros(6, dtype=torch.long)
    )
    out = augment_batch(batch, only(time_stretch=0.2), gen(9), spec=APART)
    for b in range(6):
        n = int(out.audio_mask[b].sum())
        torch.testing.assert_close(out.audio[b, 0, :n], torch.linspace(0, length - 1, n))
        assert not out.audio[b, :, n:].any()


def test_clips_of_under_two_frames_pass_the_stretch_and_the_rest_are_still_stretched():
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, :1] = True
    mask[2, :8] = True
    batch = attrs.evolve(apart_batch(n=3, frames=10), audio_mask=mask)
    out = augment_batch(batch, only(time_stretch=0.5), gen(1), spec=APART)
    assert torch.equal(out.audio[:2], batch.audio[:2])
    assert torch.equal(out.audio_mask[:2], mask[:2])
    assert out.audio_mask[2].sum() >= 6


def test_a_batch_without_an_audio_mask_gets_one_per_clip():
    batch = attrs.evolve(apart_batch(n=2, frames=12), audio_mask=None)
    out = augment_batch(batch, only(gain_db=1.0), gen(), spec=APART)
    assert torch.equal(out.audio_mask, torch.ones(2, 12, dtype=torch.bool))


def test_flips_happen_to_about_half_the_clips():
    video = torch.rand(400, 1, 1, 2, 4)
    batch = Batch(
        video=video,
        video_mask=torch.ones(400, 1, dtype=torch.bool),
        targets=torch.zeros(400, dtype=torch.long),
    )
    out = augment_batch(batch, only(video_flip=True), gen(3))
    flipped = torch.tensor([torch.equal(out.video[b], video[b].flip(-1)) for b in range(400)])
    assert 0.4 < flipped.float().mean() < 0.6


def test_jitter_alone_shifts_with_repeated_edges_over_the_whole_range():
    j, n = 2, 150
    video = torch.rand(n, 1, 2, 6, 6)
    batch = Batch(
        video=video,
        video_mask=torch.ones(n, 2, dtype=torch.bool),
        targets=torch.zeros(n, dtype=torch.long),
    )
    out = augment_batch(batch, only(video_crop_jitter=j), gen(4))
    padded = torch.nn.functional.pad(video, (j, j, j, j, 0, 0), mode="replicate")
    offsets = set()
    for b in range(n):
        found = [
            (dy, dx)
            for dy in range(2 * j + 1)
            for dx in range(2 * j + 1)
            if torch.equal(out.video[b], padded[b, :, :, dy : dy + 6, dx : dx + 6])
        ]
        assert found, f"clip {b} is not an edge-repeating shift"
        offsets.add(found[0])
    assert {dy for dy, _ in offsets} == set(range(2 * j + 1))


def test_a_batch_without_one_modality_is_augmented_on_the_other():
    video_only = attrs.evolve(make_batch(), audio=None, audio_mask=None)
    out = augment_batch(video_only, ALL_ON, gen(2), spec=SPEC)
    assert out.audio is None and not torch.equal(out.video, video_only.video)
    audio_only = attrs.evolve(make_batch(), video=None, video_mask=None)
    out = augment_batch(audio_only, ALL_ON, gen(2), spec=SPEC)
    assert out.video is None and not torch.equal(out.audio, audio_only.audio)


def test_no_modality_dropout_leaves_missing_masks_missing():
    batch = attrs.evolve(make_batch(), video_mask=None)
    assert augment(batch, only(modality_dropout=0.0), gen()).video_mask is None


#: one 4-row band: modality dropout reads no band, but a batch with audio needs a spec
PLAIN = FeatureSpec(bands=(Band("x", 0, 4),), frames_per_second=1)


def two_modality_batch(n: int, audio_mask=None, video_mask=None) -> Batch:
    """``n`` clips of 6 audio frames and 5 video frames; masks as given (None: absent)."""
    return Batch(
        audio=torch.randn(n, 4, 6),
        audio_mask=audio_mask,
        video=torch.rand(n, 3, 5, 4, 4),
        video_mask=video_mask,
        targets=torch.zeros(n, dtype=torch.long),
    )


def drop(batch: Batch, seed: int = 1) -> Batch:
    return augment_batch(batch, only(modality_dropout=0.5), gen(seed), spec=PLAIN)


def test_modality_dropout_draws_from_the_generator_only():
    batch = two_modality_batch(30)
    torch.manual_seed(0)
    first = drop(batch, seed=3)
    torch.manual_seed(1)
    second = drop(batch, seed=3)
    assert torch.equal(first.audio_mask, second.audio_mask)
    assert torch.equal(first.video_mask, second.video_mask)
    assert (~first.audio_mask.any(1) | ~first.video_mask.any(1)).any()  # something dropped


def test_modality_dropout_makes_masks_when_absent_and_keeps_padding_when_given():
    n = 200
    out = drop(two_modality_batch(n))
    assert out.audio_mask.shape == (n, 6) and out.video_mask.shape == (n, 5)
    assert out.audio_mask.dtype == torch.bool and out.video_mask.dtype == torch.bool
    kept = out.audio_mask.any(1) & out.video_mask.any(1)
    assert kept.any() and out.audio_mask[kept].all() and out.video_mask[kept].all()
    audio_mask = torch.ones(n, 6, dtype=torch.bool)
    audio_mask[:, 4:] = False
    video_mask = torch.ones(n, 5, dtype=torch.bool)
    video_mask[:, 3:] = False
    out = drop(two_modality_batch(n, audio_mask, video_mask))
    assert not out.audio_mask[:, 4:].any()
    assert not out.video_mask[:, 3:].any() and out.video_mask[:, :3].any()


def test_mixup_mixes_every_field_it_has_and_leaves_absent_ones_absent():
    batch = make_batch()
    mixed, _, tb, _ = mixup(batch, batch.targets, 0.4, gen(9))
    perm = [int((batch.targets == t).nonzero()) for t in tb]
    assert torch.equal(mixed.video_mask, batch.video_mask | batch.video_mask[perm])
    assert mixed.targets is batch.targets
    audio_only = attrs.evolve(batch, video=None, video_mask=None, geometry=None)
    mixed, *_ = mixup(audio_only, batch.targets, 0.4, gen(9))
    assert mixed.video is None and mixed.video_mask is None and mixed.geometry is None


def test_mixup_weights_come_from_a_wide_range_of_seeds():
    batch = make_batch()
    lams = {mixup(batch, batch.targets, 0.4, gen(s))[3] for s in range(300)}
    assert len(lams) > 250


def test_freq_masks_reach_the_last_row_of_their_band():
    batch = apart_batch(n=100)
    out = augment_batch(batch, only(freq_masks=1, freq_mask_width=3), gen(6), spec=APART)
    changed = (out.audio != batch.audio).any(2)  # [B, F]
    assert changed[:, 21].any() and not changed[:, 22:].any() and not changed[:, :2].any()


def test_mixup_unites_padded_video_masks_and_returns_the_given_targets():
    batch = make_batch()
    video_mask = torch.tensor([[True, True, False, False], [True] * 4, [True, False, False, False]])
    batch = attrs.evolve(batch, video_mask=video_mask)
    targets = torch.tensor([2, 0, 1])
    mixed, ta, tb, _ = mixup(batch, targets, 0.4, gen(9))
    perm = [int((targets == t).nonzero()) for t in tb]
    assert torch.equal(mixed.video_mask, video_mask | video_mask[perm])
    assert mixed.targets is targets and ta is targets


def test_refusals_say_what_the_option_does_and_what_to_do(mfcc_frontend):
    from avsent.run_config import default_run_config
    from avsent.training.augment import check_augment

    config = default_run_config(
        "drsn-audio",
        {
            "audio_frontend.name": "mfcc-like",
            "train.augment.freq_masks": 0,
            "train.augment.gain_db": 3.0,
        },
    )
    with pytest.raises(ConfigError) as info:
        check_augment(config)
    assert info.value.problem == (
        "adds a gain in dB, but front-end 'mfcc-like' has no db band (its bands: mfcc); "
        "set it to 0 / leave it unset for this front-end"
    )
    config = default_run_config(
        "drsn-audio", {"data.utterance_norm": True, "train.augment.gain_db": 3.0}
    )
    with pytest.raises(ConfigError) as info:
        check_augment(config)
    assert info.value.problem == (
        "adds a gain in dB, but data.utterance_norm standardises the features first, so dB "
        "would be standard deviations; turn one of them off (noise_std works in standard "
        "deviations)"
    )
