"""Inside an epoch and between epochs: which clips in which order, what each step is fed,
how the epoch's loss is averaged, when the run stops early, and what a fresh run ignores."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_training import FeatureList, quiet_trainer
from torch.utils.data import DistributedSampler

from avsent.data.loader import collate
from avsent.errors import CheckpointError, ConfigError
from avsent.training import loop, modulation
from avsent.training.augment import AugmentConfig
from avsent.training.checkpoint import checkpoint_path
from avsent.training.loop import epoch_seed, seed_everything


class Recording(FeatureList):
    """A FeatureList that notes which clip each fetch asked for."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n, seed)
        self.fetched: list[int] = []

    def __getitem__(self, index: int):
        self.fetched.append(int(index))
        return super().__getitem__(index)


def test_epoch_seeds_are_per_rank_and_rank_zero_by_default() -> None:
    assert epoch_seed(3, 1) == epoch_seed(3, 1, 0) != epoch_seed(3, 1, 1)


def test_seed_everything_repeats_every_generator() -> None:
    draws = []
    for _ in range(2):
        seed_everything(11)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]


def test_each_epoch_visits_the_clips_in_the_seeded_shuffle_order(
    tmp_path: Path, tiny_config
) -> None:
    train = Recording(20, seed=0)
    config = tiny_config(epochs=2, seed=3)
    trainer = quiet_trainer(config, (train, None), tmp_path)
    trainer.fit()
    want = []
    for epoch in range(2):
        sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        want += list(sampler)
    assert train.fetched == want
    assert want[:20] != sorted(want[:20]) and want[:20] != want[20:]


def test_each_epoch_is_seeded_from_the_run_seed_and_the_epoch(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    seeds = []
    real = loop.seed_everything
    monkeypatch.setattr(loop, "seed_everything", lambda seed: seeds.append(seed) or real(seed))
    quiet_trainer(tiny_config(epochs=2, seed=5), feature_sets, tmp_path).fit()
    assert seeds == [epoch_seed(5, 0, 0), epoch_seed(5, 1, 0)]


@pytest.mark.parametrize("clips", [1, 22])
def test_the_epoch_loss_is_the_clip_weighted_mean_of_its_steps(
    tmp_path: Path, tiny_config, clips
) -> None:
    """22 clips in batches of 8: steps of 8, 8 and 6 clips."""
    trainer = quiet_trainer(tiny_config(epochs=1), (FeatureList(clips, seed=0), None), tmp_path)
    steps = []
    real_step = trainer._step

    def step(batch, generator):
        loss = real_step(batch, generator)
        steps.append((loss, batch.size))
        return loss

    trainer._step = step
    (record,) = trainer.fit().history
    want = sum(loss * size for loss, size in steps) / sum(size for _, size in steps)
    assert record["train_loss"] == pytest.approx(want, rel=1e-9)
    assert len({loss for loss, _ in steps}) == len(steps)  # distinct, so the mean is a test


def test_validation_records_accuracy_recall_and_f1(tmp_path: Path, feature_sets, tiny_config):
    for record in quiet_trainer(tiny_config(epochs=2), feature_sets, tmp_path).fit().history:
        for key in ("val_accuracy", "val_macro_recall", "val_macro_f1"):
            assert isinstance(record[key], float) and 0.0 <= record[key] <= 1.0, key


def test_the_metrics_files_are_told_the_best_epoch_so_far(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    scores = iter([0.5, 0.9, 0.3])
    real_report = loop.classification_report
    monkeypatch.setattr(
        loop,
        "classification_report",
        lambda *args: {**real_report(*args), "macro_f1": next(scores)},
    )
    best = []
    real_write = loop.write_metrics
    monkeypatch.setattr(
        loop, "write_metrics", lambda d, h, b: best.append(b) or real_write(d, h, b)
    )
    quiet_trainer(tiny_config(epochs=3), feature_sets, tmp_path).fit()
    assert best == [1, 2, 2]


def test_patience_counts_epochs_since_the_last_improvement(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    """Scores 0.5, 0.4, 0.6, 0.5, 0.55: the third epoch resets the count, so with patience 2
    the run stops after the fifth, not the fourth."""
    scores = iter([0.5, 0.4, 0.6, 0.5, 0.55, 0.3, 0.2, 0.1])
    real_report = loop.classification_report
    monkeypatch.setattr(
        loop,
        "classification_report",
        lambda *args: {**real_report(*args), "macro_f1": next(scores)},
    )
    result = quiet_trainer(tiny_config(epochs=8, patience=2), feature_sets, tmp_path).fit()
    assert result.stopped_early and len(result.history) == 5
    assert (result.best_epoch, result.best_score) == (3, 0.6)


def test_a_run_without_resume_starts_over_beside_an_old_checkpoint(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    quiet_trainer(tiny_config(epochs=2), feature_sets, tmp_path).fit()
    trainer = quiet_trainer(tiny_config(epochs=2, lr=0.003), feature_sets, tmp_path)
    seen = []
    trainer.callbacks.append(lambda record: seen.append(record["epoch"]))
    trainer.fit()
    assert seen == [1, 2]


def test_resume_with_nothing_to_resume_starts_quietly(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    import io

    from rich.console import Console

    trainer = quiet_trainer(tiny_config(epochs=1), feature_sets, tmp_path)
    out = io.StringIO()
    trainer.console = Console(file=out, width=300, color_system=None)
    trainer.fit(resume=True)
    assert out.getvalue().startswith("epoch   1/1")


def resume_refusal(tmp_path: Path, sets, tiny_config, monkeypatch, change) -> str:
    """The message resuming a one-epoch run gives once ``change`` edits the read checkpoint
    (as a file damaged in a way the reader lets through would read)."""
    quiet_trainer(tiny_config(epochs=1), sets, tmp_path).fit()
    real_read = loop.read_checkpoint
    monkeypatch.setattr(loop, "read_checkpoint", lambda path: change(real_read(path)))
    with pytest.raises(CheckpointError) as caught:
        quiet_trainer(tiny_config(epochs=2), sets, tmp_path).fit(resume=True)
    return str(caught.value)


def test_a_last_checkpoint_lacking_several_fields_names_them_all(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    def without_counts(ckpt):
        del ckpt.state["bad_epochs"], ckpt.state["finished"]
        return ckpt

    message = resume_refusal(tmp_path, feature_sets, tiny_config, monkeypatch, without_counts)
    path = checkpoint_path(tmp_path, "last")
    assert message == f"{path}: damaged checkpoint header: no bad_epochs, finished"


def test_weights_that_do_not_fit_the_model_are_named_as_such(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    def renamed(ckpt):
        name = next(iter(ckpt.model_state))
        ckpt.model_state[name + "_renamed"] = ckpt.model_state.pop(name)
        return ckpt

    message = resume_refusal(tmp_path, feature_sets, tiny_config, monkeypatch, renamed)
    assert message.startswith(
        f"{checkpoint_path(tmp_path, 'last')}: does not fit this run's model ("
    )
    assert "_renamed" in message


# -- what one step is fed ----------------------------------------------------------------


def first_batch(trainer):
    return collate([trainer.data.train[i] for i in range(8)])


def test_augmentation_gets_the_models_feature_scale(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    augment = AugmentConfig(noise_std=0.5)
    trainer = quiet_trainer(tiny_config(augment=augment), feature_sets, tmp_path)
    calls = []
    real = loop.augment_batch

    def spy(batch, cfg, generator, *, spec=None, feature_std=None):
        calls.append((cfg, spec, feature_std))
        return real(batch, cfg, generator, spec=spec, feature_std=feature_std)

    monkeypatch.setattr(loop, "augment_batch", spy)
    trainer._step(first_batch(trainer), torch.Generator().manual_seed(0))
    ((cfg, spec, std),) = calls
    assert cfg == augment and spec is trainer.audio_spec and spec is not None
    assert std is trainer.model.audio_std


def test_no_augmentation_is_applied_when_none_is_configured(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    nothing = AugmentConfig(time_masks=0, freq_masks=0, video_flip=False, video_crop_jitter=0)
    assert not nothing.active
    trainer = quiet_trainer(tiny_config(augment=nothing), feature_sets, tmp_path)
    monkeypatch.setattr(loop, "augment_batch", lambda *a, **k: pytest.fail("augmented"))
    monkeypatch.setattr(loop, "mixup", lambda *a, **k: pytest.fail("mixed"))
    assert np.isfinite(trainer._step(first_batch(trainer), torch.Generator().manual_seed(0)))


def test_mixup_feeds_both_targets_and_the_mix_to_the_loss(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch
) -> None:
    trainer = quiet_trainer(
        tiny_config(augment=AugmentConfig(mixup_alpha=0.4)), feature_sets, tmp_path
    )
    mixed, fed = [], []
    real_mixup = loop.mixup

    def spy_mixup(batch, targets, alpha, generator):
        out = real_mixup(batch, targets, alpha, generator)
        mixed.append((alpha, out[2], out[3]))
        return out

    real_forward = trainer.loss_module.forward

    def spy_forward(batch, targets, targets_b=None, lam=1.0):
        fed.append((targets_b, lam))
        return real_forward(batch, targets, targets_b, lam)

    monkeypatch.setattr(loop, "mixup", spy_mixup)
    monkeypatch.setattr(trainer.loss_module, "forward", spy_forward)
    trainer._step(first_batch(trainer), torch.Generator().manual_seed(0))
    ((alpha, targets_b, lam),) = mixed
    ((fed_b, fed_lam),) = fed
    assert alpha == 0.4 and fed_b is targets_b and fed_lam == lam and 0 < lam < 1


def test_a_model_torch_compile_cannot_compile_is_a_config_error(
    tmp_path: Path, feature_sets, tiny_config
) -> None:
    class GraphBreak(torch._dynamo.exc.TorchDynamoException):
        pass

    def failing(*args):
        raise GraphBreak("data-dependent branch\nfrom user code at model.py:12")

    trainer = quiet_trainer(tiny_config(), feature_sets, tmp_path)
    trainer.loss_module = failing
    with pytest.raises(ConfigError) as caught:
        trainer._step(first_batch(trainer), torch.Generator().manual_seed(0))
    assert caught.value.field == "train.compile"
    assert str(caught.value) == (
        "train.compile: torch.compile cannot compile this model (GraphBreak: "
        "data-dependent branch); set train.compile=false"
    )


def test_the_loss_is_configured_from_train(tmp_path: Path, feature_sets, tiny_config) -> None:
    config = tiny_config(aux_loss=0.3, grad_modulation=0.5, label_smoothing=0.1)
    loss_module = quiet_trainer(config, feature_sets, tmp_path).loss_module
    assert loss_module.aux_loss == 0.3 and loss_module.track_confidence is True
    assert loss_module.criterion.label_smoothing == 0.1
    plain = quiet_trainer(tiny_config(), feature_sets, tmp_path / "plain").loss_module
    assert plain.aux_loss == 0.0 and plain.track_confidence is False


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_gradient_modulation_uses_this_steps_confidences_and_the_epochs_noise(
    tmp_path: Path, feature_sets, tiny_config, monkeypatch, strength
) -> None:
    config = tiny_config(epochs=2, aux_loss=0.5, grad_modulation=strength, seed=4)
    trainer = quiet_trainer(config, feature_sets, tmp_path)
    calls = []
    real = modulation.modulate_gradients

    def spy(model, factors, generator):
        confidence = dict(trainer.loss_module.confidence)
        calls.append((model, factors, confidence, generator.get_state().clone()))
        real(model, factors, generator)

    monkeypatch.setattr(modulation, "modulate_gradients", spy)
    trainer.fit()
    if strength == 0:
        assert calls == [] and trainer.loss_module.confidence == {}
        return
    assert len(calls) == 2 * trainer.steps_per_epoch
    for model, factors, confidence, _ in calls:
        assert model is trainer.model and set(confidence) == {"audio"}
        assert factors == modulation.coefficients(confidence, strength)
    for epoch in range(2):
        state = calls[epoch * trainer.steps_per_epoch][3]
        assert torch.equal(state, modulation.noise_generator(4, epoch).get_state())
