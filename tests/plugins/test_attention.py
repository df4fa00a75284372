"""IMA, CMA and the simple fusions: shapes, widths, errors, and masks that really mask."""

from __future__ import annotations

import pytest
import torch

from avsent.contracts import Tokens
from avsent.errors import ConfigError
from avsent.layers.attention import sinusoid
from avsent.plugins.attention import (
    CMAConfig,
    ConcatFusion,
    CrossModalAttention,
    IdentityIntra,
    IMAConfig,
    IntraModalAttention,
    MulTConfig,
    MulTFusion,
    PassthroughFusion,
)
from avsent.registry import get_registry


def _tokens(batch: int, steps: int, dim: int, lengths: list[int], seed: int = 0) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g)
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    return Tokens(x, mask)


def _scramble_padding(tokens: Tokens, seed: int = 1) -> Tokens:
    """Same real steps, different (large) junk at padded steps."""
    g = torch.Generator().manual_seed(seed)
    junk = 100 * torch.randn(tokens.x.shape, generator=g)
    x = torch.where(tokens.mask.unsqueeze(-1), tokens.x, junk)
    return Tokens(x, tokens.mask)


@pytest.mark.parametrize("style", ["paper", "transformer"])
@pytest.mark.parametrize("d_model", [0, 16])
def test_ima_shapes_width_and_mask(style, d_model):
    block = IntraModalAttention(
        IMAConfig(style=style, d_model=d_model, heads=2, layers=2, positional=True), dim=8
    ).eval()
    tokens = _tokens(3, 7, 8, [7, 4, 1])
    out = block(tokens)
    assert block.out_dim == (d_model or 8)
    assert out.x.shape == (3, 7, block.out_dim)
    assert torch.equal(out.mask, tokens.mask)
    # padded positions are zero, and their content never reaches a real position
    assert torch.all(out.x[~tokens.mask] == 0)
    again = block(_scramble_padding(tokens))
    torch.testing.assert_close(again.x, out.x)


def test_ima_paper_style_is_equations_4_to_7():
    """Defaults: F' = softmax(Q Kᵀ / √d_k) V with Q, K, V linear maps, d_k the width, and
    nothing else (no output map, residual or normalisation)."""
    block = IntraModalAttention(IMAConfig(), dim=4).eval()
    tokens = _tokens(1, 5, 4, [3])
    attn = block.layers[0]
    x = tokens.x[0, :3]
    q, k, v = attn.q(x), attn.k(x), attn.v(x)
    expected = torch.softmax(q @ k.T / 2.0, dim=-1) @ v  # √d_k = √4
    torch.testing.assert_close(block(tokens).x[0, :3], expected)
    assert sorted(n.split(".")[-2] for n, _ in block.named_parameters()) == [
        "k",
        "k",
        "q",
        "q",
        "v",
        "v",
    ]


def test_ima_heads_must_divide_width():
    with pytest.raises(ConfigError, match="divisible"):
        IntraModalAttention(IMAConfig(heads=3), dim=8)


def test_ima_survives_an_all_padding_row():
    block = IntraModalAttention(IMAConfig(heads=2), dim=8).eval()
    tokens = _tokens(2, 4, 8, [4, 0])
    out = block(tokens)
    assert torch.isfinite(out.x).all()
    assert torch.all(out.x[1] == 0)


def test_identity_keeps_tokens_and_width():
    tokens = _tokens(2, 3, 5, [3, 2])
    block = IdentityIntra(dim=5)
    assert block.out_dim == 5
    assert block(tokens) is tokens


def _reference_cma(fusion: CrossModalAttention, audio: Tokens, video: Tokens, i: int):
    """Eq. 8 by hand for sample i: Q, K, V of the real audio and video tokens side by
    side; each query sees the other modality's keys (attend="other") or all of them."""
    a = audio.x[i, audio.mask[i]]
    v = video.x[i, video.mask[i]]
    qa, ka, va = fusion.audio_qkv(a).chunk(3, dim=-1)
    qv, kv, vv = fusion.video_qkv(v).chunk(3, dim=-1)
    scale = fusion.config.d_model**0.5
    if fusion.config.attend == "other":
        fused_a = torch.softmax(qa @ kv.T / scale, dim=-1) @ vv  # audio queries read video
        fused_v = torch.softmax(qv @ ka.T / scale, dim=-1) @ va  # video queries read audio
        return torch.cat([fused_a, fused_v]).mean(0)
    q, k, val = torch.cat([qa, qv]), torch.cat([ka, kv]), torch.cat([va, vv])
    return (torch.softmax(q @ k.T / scale, dim=-1) @ val).mean(0)


@pytest.mark.parametrize("attend", ["other", "all"])
def test_cma_is_equation_8(attend):
    fusion = CrossModalAttention(
        CMAConfig(d_model=8, attend=attend), audio_dim=6, video_dim=10
    ).eval()
    audio = _tokens(3, 9, 6, [9, 5, 2], seed=2)
    video = _tokens(3, 4, 10, [4, 4, 1], seed=3)
    out = fusion(audio, video)
    assert out.shape == (3, 8) and fusion.out_dim == 8
    for i in range(3):
        torch.testing.assert_close(out[i], _reference_cma(fusion, audio, video, i))
    torch.testing.assert_close(fusion(_scramble_padding(audio), _scramble_padding(video)), out)


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_mult_variant_output_and_masks(combine):
    fusion = MulTFusion(
        MulTConfig(d_model=16, heads=4, layers=2, combine=combine), audio_dim=6, video_dim=10
    ).eval()
    audio = _tokens(3, 9, 6, [9, 5, 2], seed=2)
    video = _tokens(3, 4, 10, [4, 4, 1], seed=3)
    out = fusion(audio, video)
    assert out.shape == (3, fusion.out_dim)
    assert fusion.out_dim == (32 if combine == "concat" else 16)
    torch.testing.assert_close(fusion(_scramble_padding(audio), _scramble_padding(video)), out)
    # real steps do matter, in both modalities
    other_audio = Tokens(audio.x + audio.mask.unsqueeze(-1), audio.mask)
    assert not torch.allclose(fusion(other_audio, video), out)
    other_video = Tokens(video.x + video.mask.unsqueeze(-1), video.mask)
    assert not torch.allclose(fusion(audio, other_video), out)


def test_cma_needs_both_modalities():
    with pytest.raises(ConfigError, match="passthrough"):
        CrossModalAttention(CMAConfig(), audio_dim=8, video_dim=None)
    with pytest.raises(ConfigError, match="passthrough"):
        MulTFusion(MulTConfig(), audio_dim=None, video_dim=8)


def test_concat_is_masked_means_side_by_side():
    audio = _tokens(2, 5, 3, [5, 2])
    video = _tokens(2, 4, 2, [1, 4])
    fusion = ConcatFusion(audio_dim=3, video_dim=2)
    out = fusion(audio, video)
    assert fusion.out_dim == 5
    torch.testing.assert_close(out[1, :3], audio.x[1, :2].mean(0))
    torch.testing.assert_close(out[0, 3:], video.x[0, :1].mean(0))
    torch.testing.assert_close(fusion(_scramble_padding(audio), _scramble_padding(video)), out)
    assert ConcatFusion(audio_dim=None, video_dim=2)(None, video).shape == (2, 2)


def test_passthrough_takes_exactly_one_modality():
    video = _tokens(2, 4, 6, [4, 3])
    fusion = PassthroughFusion(audio_dim=None, video_dim=6)
    assert fusion.out_dim == 6
    torch.testing.assert_close(fusion(None, video), video.mean())
    torch.testing.assert_close(fusion(None, _scramble_padding(video)), video.mean())
    with pytest.raises(ConfigError, match="exactly one"):
        PassthroughFusion(audio_dim=4, video_dim=6)
    with pytest.raises(ConfigError, match="exactly one"):
        PassthroughFusion(audio_dim=None, video_dim=None)
    with pytest.raises(ConfigError, match="exactly one"):
        fusion(video, video)


def test_parts_are_registered_through_the_entry_point():
    registry = get_registry()
    for kind, name in [
        ("intra_modal", "ima"),
        ("intra_modal", "identity"),
        ("fusion", "cma"),
        ("fusion", "cma-mult"),
        ("fusion", "concat"),
        ("fusion", "passthrough"),
    ]:
        assert registry.get(kind, name).plugin == "attention"
    built = registry.get("fusion", "cma").build(None, audio_dim=8, video_dim=8)
    assert built.out_dim == 128
    assert registry.get("intra_modal", "identity").build(None, dim=7).out_dim == 7


@pytest.mark.parametrize("style", ["paper", "transformer"])
def test_every_attention_parameter_gets_a_gradient(style):
    ima = IntraModalAttention(IMAConfig(style=style, d_model=8, heads=2, layers=2), dim=6)
    cma = CrossModalAttention(CMAConfig(d_model=8, heads=2), audio_dim=8, video_dim=8)
    mult = MulTFusion(MulTConfig(d_model=8, heads=2, layers=2), audio_dim=8, video_dim=8)
    torch.manual_seed(0)
    audio = ima(_tokens(2, 5, 6, [5, 3]))
    video = _tokens(2, 3, 8, [3, 2])
    # random weights on the outputs: a plain sum of a LayerNorm's output is constant in its
    # input, so its gradient is float noise that may or may not be exactly zero
    fused = [cma(audio, video), mult(audio, video)]
    sum((out * torch.randn_like(out)).sum() for out in fused).backward()
    for module in (ima, cma, mult):
        missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing


def test_cma_fuses_a_clip_without_one_modality_from_the_other():
    """A clip whose video has no real step (dropped, or a file without video) is fused
    from its audio alone (audio attends over audio), and its neighbours are unaffected."""
    fusion = CrossModalAttention(CMAConfig(d_model=8), audio_dim=6, video_dim=10).eval()
    audio = _tokens(2, 5, 6, [5, 4], seed=4)
    video = _tokens(2, 3, 10, [3, 0], seed=5)  # clip 1: no video
    out = fusion(audio, video)
    assert torch.isfinite(out).all()
    a = audio.x[1, :4]
    q, k, v = fusion.audio_qkv(a).chunk(3, dim=-1)
    alone = (torch.softmax(q @ k.T / 8**0.5, dim=-1) @ v).mean(0)
    torch.testing.assert_close(out[1], alone)
    torch.testing.assert_close(out[0], _reference_cma(fusion, audio, video, 0))


# -- exact errors, structure, positions, dropout and the both-present rule ------------------


@pytest.mark.parametrize(
    ("build", "field", "problem"),
    [
        (
            lambda: CrossModalAttention(CMAConfig(), audio_dim=8, video_dim=None),
            "fusion",
            "'cma' needs both audio and video; use 'passthrough' for one modality",
        ),
        (
            lambda: MulTFusion(MulTConfig(), audio_dim=None, video_dim=8),
            "fusion",
            "'cma-mult' needs both audio and video; use 'passthrough' for one modality",
        ),
        (
            lambda: CrossModalAttention(CMAConfig(d_model=10, heads=3), audio_dim=4, video_dim=4),
            "fusion.heads",
            "width 10 is not divisible by 3",
        ),
        (
            lambda: ConcatFusion(audio_dim=None, video_dim=None),
            "fusion",
            "'concat' needs at least one modality",
        ),
        (
            lambda: PassthroughFusion(audio_dim=4, video_dim=6),
            "fusion",
            "'passthrough' needs exactly one modality (set audio or video to 'none'); "
            "use 'cma' or 'concat' for two",
        ),
    ],
)
def test_a_fusion_that_cannot_be_built_says_exactly_why(build, field, problem):
    with pytest.raises(ConfigError) as info:
        build()
    assert (info.value.field, info.value.problem) == (field, problem)


def test_a_fusion_given_a_batch_without_a_modality_says_exactly_which():
    audio, video = _tokens(2, 5, 4, [5, 3]), _tokens(2, 3, 4, [3, 2])
    for name, fusion in {
        "cma": CrossModalAttention(CMAConfig(d_model=8), audio_dim=4, video_dim=4),
        "cma-mult": MulTFusion(MulTConfig(d_model=8), audio_dim=4, video_dim=4),
    }.items():
        for batch in ((None, video), (audio, None)):
            with pytest.raises(ConfigError) as info:
                fusion(*batch)
            assert (info.value.field, info.value.problem) == (
                "fusion",
                f"'{name}' got a batch without audio or without video",
            )
    with pytest.raises(ConfigError) as info:
        PassthroughFusion(audio_dim=4, video_dim=None)(audio, video)
    assert (info.value.field, info.value.problem) == (
        "fusion",
        "'passthrough' needs exactly one modality in the batch",
    )


def test_passthrough_of_audio_is_the_audio_mean():
    audio = _tokens(2, 5, 4, [5, 3])
    fusion = PassthroughFusion(audio_dim=4, video_dim=None)
    assert fusion.out_dim == 4
    torch.testing.assert_close(fusion(audio, None), audio.mean())


def test_ima_structure_follows_its_config():
    paper = IntraModalAttention(IMAConfig(layers=2, attn_dropout=0.3), dim=8)
    assert [layer.dropout for layer in paper.layers] == [0.3, 0.3]
    plain = IntraModalAttention(IMAConfig(style="transformer", layers=3), dim=8)
    assert isinstance(plain.proj, torch.nn.Identity)  # d_model 0: the encoder's width
    assert len(plain.layers) == 3
    assert all(block.norm_kv is None for block in plain.layers)  # self-attention
    mult = MulTFusion(MulTConfig(d_model=8, layers=3), audio_dim=4, video_dim=6)
    for stack in (mult.video_from_audio, mult.audio_from_video):
        assert len(stack) == 3 and all(block.norm_kv is not None for block in stack)


@pytest.mark.parametrize("style", ["paper", "transformer"])
def test_ima_positions_are_added_to_the_tokens(style):
    torch.manual_seed(0)
    tokens = _tokens(2, 6, 8, [6, 4])
    with_positions = IntraModalAttention(IMAConfig(style=style, positional=True), dim=8).eval()
    without = IntraModalAttention(IMAConfig(style=style), dim=8).eval()
    without.load_state_dict(with_positions.state_dict())
    shifted = Tokens(tokens.x + sinusoid(6, 8, tokens.x.device), tokens.mask)
    torch.testing.assert_close(with_positions(tokens).x, without(shifted).x)


def test_mult_positions_are_added_after_the_input_maps():
    torch.manual_seed(0)
    audio, video = _tokens(2, 6, 8, [6, 4]), _tokens(2, 3, 8, [3, 2], seed=1)
    with_positions = MulTFusion(MulTConfig(d_model=8), audio_dim=8, video_dim=8).eval()
    without = MulTFusion(MulTConfig(d_model=8, positional=False), audio_dim=8, video_dim=8)
    without.load_state_dict(with_positions.state_dict())
    without.eval()
    for layer in (
        with_positions.audio_in,
        with_positions.video_in,
        without.audio_in,
        without.video_in,
    ):
        with torch.no_grad():  # identity maps: a position added before equals one added after
            layer.weight.copy_(torch.eye(8))
            layer.bias.zero_()
    shifted_audio = Tokens(audio.x + sinusoid(6, 8, audio.x.device), audio.mask)
    shifted_video = Tokens(video.x + sinusoid(3, 8, video.x.device), video.mask)
    torch.testing.assert_close(with_positions(audio, video), without(shifted_audio, shifted_video))


def test_mult_sum_is_the_sum_of_the_concatenated_halves():
    audio, video = _tokens(2, 6, 4, [6, 4]), _tokens(2, 3, 6, [3, 2], seed=1)
    concat = MulTFusion(MulTConfig(d_model=8), audio_dim=4, video_dim=6).eval()
    summed = MulTFusion(MulTConfig(d_model=8, combine="sum"), audio_dim=4, video_dim=6).eval()
    summed.load_state_dict(concat.state_dict())
    both = concat(audio, video)
    torch.testing.assert_close(summed(audio, video), both[:, :8] + both[:, 8:])


def test_positions_keep_a_bfloat16_model_in_bfloat16():
    tokens = Tokens(_tokens(2, 6, 8, [6, 4]).x.bfloat16(), _tokens(2, 6, 8, [6, 4]).mask)
    ima = IntraModalAttention(IMAConfig(positional=True), dim=8).bfloat16().eval()
    assert ima(tokens).x.dtype == torch.bfloat16
    mult = MulTFusion(MulTConfig(d_model=8), audio_dim=8, video_dim=8).bfloat16().eval()
    assert mult(tokens, tokens).dtype == torch.bfloat16


def test_cma_attention_dropout_acts_in_training_only():
    audio, video = _tokens(2, 6, 4, [6, 4]), _tokens(2, 3, 4, [3, 2], seed=1)
    fusion = CrossModalAttention(CMAConfig(d_model=8, attn_dropout=0.5), audio_dim=4, video_dim=4)
    fusion.eval()
    torch.testing.assert_close(fusion(audio, video), fusion(audio, video))
    reference = CrossModalAttention(CMAConfig(d_model=8), audio_dim=4, video_dim=4).eval()
    reference.load_state_dict(fusion.state_dict())
    torch.testing.assert_close(fusion(audio, video), reference(audio, video))
    fusion.train()
    torch.manual_seed(0)
    first = fusion(audio, video)
    assert not torch.allclose(first, fusion(audio, video))


def test_cma_lets_a_clip_missing_a_modality_attend_within_the_other():
    """Per clip: both present → only across modalities; one absent → only within."""
    audio = Tokens(
        torch.randn(3, 2, 4), torch.tensor([[True, True], [False, False], [True, False]])
    )
    video = Tokens(torch.randn(3, 1, 4), torch.tensor([[True], [True], [False]]))
    allowed = CrossModalAttention._other_modality(audio, video)
    is_video = torch.tensor([False, False, True])
    across = is_video[:, None] != is_video[None, :]
    assert torch.equal(allowed[0], across)
    assert torch.equal(allowed[1], ~across)
    assert torch.equal(allowed[2], ~across)
    assert allowed.dtype == torch.bool
