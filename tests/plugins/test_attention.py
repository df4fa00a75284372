"""IMA, CMA and the simple fusions: shapes, widths, errors, and masks that really mask."""

from __future__ import annotations

import pytest
import torch

from avsent.contracts import Tokens
from avsent.errors import ConfigError
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
