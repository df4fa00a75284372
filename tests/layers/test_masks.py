"""The shared mask rules on their own: pooling, downsampling and softmax over real steps."""

from __future__ import annotations

import pytest
import torch

from avsent.layers.masks import (
    attention_mask,
    downsample_mask,
    masked_mean,
    masked_softmax,
    stride_mask,
    zero_padded_steps,
)


def test_masked_mean_counts_real_steps_and_pools_an_all_padding_row_to_zeros() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [50.0, 60.0]], [[7.0, 8.0], [9.0, 9.0], [1.0, 1.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    x.requires_grad_(True)
    out = masked_mean(x, mask)
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [0.0, 0.0]]))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()  # no 0/0 on the empty row, forward or backward
    assert (x.grad[1] == 0).all() and (x.grad[0, 2] == 0).all()


def test_stride_and_downsample_masks_keep_a_step_with_any_real_input() -> None:
    mask = torch.tensor([[True, True, True, True, True], [True, False, False, False, False]])
    assert stride_mask(mask, 2).tolist() == [[True, True, True], [True, False, False]]
    assert stride_mask(mask, 1) is mask
    assert stride_mask(mask, 3).tolist() == [[True, True], [True, False]]  # 5 steps → 2
    assert stride_mask(mask[:, :4], 4).tolist() == [[True], [True]]
    assert downsample_mask(mask, 2).tolist() == [[True, True], [True, False]]


def test_softmax_and_attention_masks_give_padding_no_weight() -> None:
    scores = torch.tensor([[5.0, 1.0, 1.0], [2.0, 0.0, 7.0]])
    mask = torch.tensor([[False, True, True], [False, False, False]])
    weights = masked_softmax(scores, mask)
    torch.testing.assert_close(weights[0], torch.tensor([0.0, 0.5, 0.5]))
    # an empty row gets finite weights summing to 1 (its output is zeroed by the caller)
    assert torch.isfinite(weights[1]).all() and weights[1].sum() == pytest.approx(1.0)
    assert attention_mask(mask).tolist() == [[[[False, True, True]]], [[[True, True, True]]]]


def test_padded_steps_are_zeroed_in_audio_and_video_layouts() -> None:
    mask = torch.tensor([[True, False]])
    audio = zero_padded_steps(torch.ones(1, 3, 2), mask)
    video = zero_padded_steps(torch.ones(1, 3, 2, 4, 4), mask)
    assert audio[..., 0].eq(1).all() and audio[..., 1].eq(0).all()
    assert video[:, :, 0].eq(1).all() and video[:, :, 1].eq(0).all()


def test_zero_padded_steps_names_a_shape_it_cannot_handle() -> None:
    with pytest.raises(ValueError, match=r"got \(1, 2, 3, 4\)"):
        zero_padded_steps(torch.ones(1, 2, 3, 4), torch.ones(1, 3, dtype=torch.bool))
