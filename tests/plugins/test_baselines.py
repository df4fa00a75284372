"""Baseline parts (rnn, VCAN, CMAVF-AD): contracts, masks, losses, and a training step."""

from __future__ import annotations

import pytest
import torch

from avsent import Batch, InputSpec, compose
from avsent.contracts import Tokens
from avsent.errors import ConfigError
from avsent.plugins.baselines import (
    RECIPES,
    ClassifierGroup,
    ClassifierGroupConfig,
    CMAVFAudioConfig,
    CMAVFAudioEncoder,
    CMAVFVideoConfig,
    CMAVFVideoEncoder,
    CrossModalSelection,
    FrameCNN,
    FrameCNNConfig,
    LSTMConfig,
    LSTMEncoder,
    MetricHead,
    MetricHeadConfig,
    TemporalAttention,
    VCANAudioConfig,
    VCANAudioEncoder,
    VCANSelectConfig,
    batch_hard_triplet,
)
from avsent.registry import get_registry

SPEC = InputSpec(audio_features=16, video_channels=3, video_frames=4, video_size=16)


def _mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def _junk_in_padding(x: torch.Tensor, mask: torch.Tensor, time_axis: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[0], shape[time_axis] = mask.shape
    return torch.where(mask.view(shape), x, 50 * torch.randn_like(x))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_readouts_ignore_padding(bidirectional):
    torch.manual_seed(0)
    config = LSTMConfig(hidden=8, layers=2, bidirectional=bidirectional, readout="all")
    enc = LSTMEncoder(config, in_features=5).eval()
    x, mask = torch.randn(3, 5, 9), _mask([9, 4, 1], 9)
    out = enc(x, mask)
    assert enc.out_dim == 8 * (2 if bidirectional else 1)
    assert out.x.shape == (3, 9, enc.out_dim) and torch.equal(out.mask, mask)
    torch.testing.assert_close(enc(_junk_in_padding(x, mask, 2), mask).x, out.x)
    last = LSTMEncoder(
        LSTMConfig(hidden=8, layers=2, bidirectional=bidirectional), in_features=5
    ).eval()
    last.load_state_dict(enc.state_dict())
    one = last(x, mask)
    assert one.x.shape == (3, 1, enc.out_dim) and one.mask.all()
    # the forward direction's last state is the per-step output at the last real step
    torch.testing.assert_close(one.x[1, 0, :8], out.x[1, 3, :8])
    # a clip alone gives the same result as inside a padded batch
    torch.testing.assert_close(last(x[1:2, :, :4], mask[1:2, :4]).x[0], one.x[1])


def test_temporal_attention_mean_is_the_weighted_sum():
    att = TemporalAttention(4)
    tokens = Tokens(torch.randn(2, 5, 4), _mask([5, 2], 5))
    scored = att(tokens)
    weights = torch.softmax(att.score(tokens.x[1, :2]).squeeze(-1), dim=0)
    torch.testing.assert_close(scored.mean()[1], (weights[:, None] * tokens.x[1, :2]).sum(0))


def test_cmavf_encoders_shapes_and_padding():
    torch.manual_seed(0)
    audio = CMAVFAudioEncoder(CMAVFAudioConfig(channels=(4, 8)), in_features=16).eval()
    x, mask = torch.randn(2, 16, 12), _mask([12, 5], 12)
    out = audio(x, mask)
    assert out.x.shape == (2, 3, 8) and out.mask.tolist() == [[True] * 3, [True, True, False]]
    torch.testing.assert_close(audio(_junk_in_padding(x, mask, 2), mask).x, out.x)

    video = CMAVFVideoEncoder(
        CMAVFVideoConfig(channels=(4, 8), reduction=2, spatial_kernel=3),
        in_channels=3,
        frames=4,
        size=16,
    ).eval()
    frames, vmask = torch.randn(2, 3, 4, 16, 16), _mask([4, 2], 4)
    vout = video(frames, vmask)
    assert vout.x.shape == (2, 4, 8) and torch.equal(vout.mask, vmask)
    torch.testing.assert_close(video(_junk_in_padding(frames, vmask, 2), vmask).x, vout.x)


def test_cnn_inputs_too_small_are_config_errors():
    with pytest.raises(ConfigError, match="at least 16"):
        CMAVFVideoEncoder(CMAVFVideoConfig(channels=(4, 4, 4, 4)), in_channels=3, frames=4, size=8)
    with pytest.raises(ConfigError, match="audio.channels"):
        VCANAudioEncoder(VCANAudioConfig(channels=(4,) * 6), in_features=16)
    with pytest.raises(ValueError, match="distinct"):
        VCANAudioConfig(maps=("delta", "delta"))


def test_vcan_audio_maps_are_channels():
    enc = VCANAudioEncoder(VCANAudioConfig(maps=("static", "delta"), channels=(4,)), in_features=8)
    assert enc.cnn[0][0].in_channels == 2
    x, mask = torch.randn(2, 8, 10), _mask([10, 6], 10)
    out = enc.eval()(x, mask)
    assert out.x.shape == (2, 5, 4)
    torch.testing.assert_close(enc(_junk_in_padding(x, mask, 2), mask).x, out.x)


def test_frame_cnn_one_token_per_frame():
    enc = FrameCNN(FrameCNNConfig(channels=(4, 8)), in_channels=3, frames=3, size=8).eval()
    x, mask = torch.randn(2, 3, 3, 8, 8), _mask([3, 1], 3)
    out = enc(x, mask)
    assert out.x.shape == (2, 3, 8) and torch.all(out.x[1, 1:] == 0)
    # frame order is preserved: frame 0 alone gives token 0
    torch.testing.assert_close(enc(x[:1, :, :1], mask[:1, :1]).x[0, 0], out.x[0, 0])


def test_vcan_selection_keeps_the_frames_the_audio_points_to():
    fusion = CrossModalSelection(VCANSelectConfig(d_model=4, keep=0.5), audio_dim=4, video_dim=4)
    with torch.no_grad():
        for lin in (fusion.audio_proj, fusion.video_proj):
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
    audio = Tokens(torch.tensor([[[1.0, 0, 0, 0]]]), torch.ones(1, 1, dtype=torch.bool))
    frames = torch.tensor([[[5.0, 0, 0, 0], [-5.0, 0, 0, 0], [0, 9.0, 0, 0], [4.0, 0, 0, 0]]])
    video = Tokens(frames, torch.ones(1, 4, dtype=torch.bool))
    out = fusion(audio, video)
    assert fusion.out_dim == 8 and out.shape == (1, 8)
    # keep = 0.5 of 4 frames → frames 0 and 3 (highest scores), softmax-weighted
    w = torch.softmax(torch.tensor([5.0, 4.0]) / 2.0, dim=0)
    torch.testing.assert_close(out[0, 4:], w[0] * frames[0, 0] + w[1] * frames[0, 3])
    # a padded frame is never selected, whatever it holds: of 3 real frames, 2 are kept
    padded = Tokens(frames, torch.tensor([[True, True, True, False]]))
    w = torch.softmax(torch.tensor([5.0, 0.0]) / 2.0, dim=0)
    torch.testing.assert_close(
        fusion(audio, padded)[0, 4:], w[0] * frames[0, 0] + w[1] * frames[0, 2]
    )
    with pytest.raises(ConfigError, match="both"):
        CrossModalSelection(VCANSelectConfig(), audio_dim=None, video_dim=4)


def test_classifier_group_averages_members():
    head = ClassifierGroup(ClassifierGroupConfig(members=3, hidden=4), in_dim=5, num_classes=7)
    head.eval()
    x = torch.randn(2, 5)
    expected = sum(m(x) for m in head.members) / 3
    torch.testing.assert_close(head(x), expected)


def test_triplet_loss_zero_when_classes_are_separated_by_the_margin():
    targets = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0], [1.0, 0.01], [-1.0, 0], [-1.0, 0.01]])
    assert batch_hard_triplet(apart, targets, margin=0.3).item() == 0.0
    mixed = torch.tensor([[1.0, 0], [-1.0, 0], [1.0, 0.01], [-1.0, 0.01]])
    assert batch_hard_triplet(mixed, targets, margin=0.3).item() > 1.0
    single = batch_hard_triplet(apart[:2], torch.tensor([0, 1]), margin=0.3)
    assert single.item() == 0.0 and single.requires_grad is False


@pytest.mark.parametrize("loss", ["triplet", "center"])
def test_metric_head_extra_loss_has_gradients(loss):
    head = MetricHead(MetricHeadConfig(loss=loss, weight=0.5), in_dim=6, num_classes=3)
    features = torch.randn(6, 6, requires_grad=True)
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    value = head.extra_loss(features, targets)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert features.grad.abs().sum() > 0
    assert head(features).shape == (6, 3)


def _batch(audio: bool, video: bool) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        audio=torch.randn(3, 16, 20, generator=g) if audio else None,
        audio_mask=_mask([20, 13, 7], 20) if audio else None,
        video=torch.rand(3, 3, 4, 16, 16, generator=g) if video else None,
        video_mask=_mask([4, 3, 2], 4) if video else None,
        targets=torch.tensor([0, 1, 1]),
    )


TINY_PARTS = {
    "rnn": dict(audio=("lstm", {"hidden": 8}), fusion="passthrough", audio_intra="identity"),
    "vcan": dict(
        audio=("vcan-afm", {"channels": [4, 8]}),
        video=("vcan-frames", {"channels": [4, 8]}),
        audio_intra="identity",
        video_intra="identity",
        fusion=("vcan-select", {"d_model": 8}),
        head=("classifier-group", {"hidden": 8}),
    ),
    "cmavf-ad": dict(
        audio=("cmavf-2dcnn", {"channels": [4, 8]}),
        video=("cmavf-3dcnn", {"channels": [4, 8], "reduction": 2}),
        audio_intra="identity",
        video_intra="identity",
        fusion=("cma-mult", {"d_model": 8, "heads": 2, "layers": 1}),
        head="metric",
    ),
}


@pytest.mark.parametrize("name", sorted(TINY_PARTS))
def test_tiny_baseline_models_train_a_step(name):
    torch.manual_seed(0)
    model = compose(**TINY_PARTS[name], inputs=SPEC)
    batch = _batch(model.uses_audio, model.uses_video)
    out = model(batch)
    assert out.logits.shape == (3, 7)
    loss = torch.nn.functional.cross_entropy(out.logits, batch.targets)
    if hasattr(model.head, "extra_loss"):
        loss = loss + model.head.extra_loss(out.fused, batch.targets)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_baseline_parts_and_recipes_are_registered():
    registry = get_registry()
    for kind, name in [
        ("audio_encoder", "lstm"),
        ("audio_encoder", "cmavf-2dcnn"),
        ("audio_encoder", "vcan-afm"),
        ("video_encoder", "cmavf-3dcnn"),
        ("video_encoder", "vcan-frames"),
        ("fusion", "vcan-select"),
        ("head", "metric"),
        ("head", "classifier-group"),
    ]:
        assert registry.get(kind, name).plugin == "baselines"
    for name, recipe in RECIPES.items():
        assert registry.get("recipe", name).obj is recipe
        assert recipe.reference.startswith("Table 4")
