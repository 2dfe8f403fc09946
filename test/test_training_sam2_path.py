"""The differentiable SAM 2 path computes what the inference engine computes, with gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unipixel_ros.decoders.graph import seed_prompt
from unipixel_ros.model.sam2_engine import Sam2Engine
from unipixel_ros.model.sam2_source import tiny_sam2
from unipixel_ros.synthetic import random_video
from unipixel_ros.training.sam2_path import Sam2PathError, encode_frames, segment_clip

W, H, T = 64, 48, 4


@pytest.fixture(scope="module")
def sam2():
    return tiny_sam2(image_size=128, seed=3).eval()


@pytest.fixture(scope="module")
def video():
    return random_video(5, T, W, H)


def _close(mine: torch.Tensor, theirs: torch.Tensor) -> None:
    scale = float(theirs.abs().max())
    assert float((mine - theirs).abs().max()) <= 1e-3 * max(scale, 1.0)


def _per_frame(features, count: int = 1):
    return [features.select([t] * count) for t in range(T)]


def _seeded_both_ways(sam2, video, seed: int):
    """Random <SEG> tokens seeded on frame 0 and tracked: (training path's predictions, engine's result)."""
    tokens = torch.randn(1, 2, sam2.hidden_dim, generator=torch.Generator().manual_seed(seed))
    reference = Sam2Engine(sam2).segment_seg_tokens(list(video.images), list(range(T)), tokens)
    with torch.no_grad():
        predictions = segment_clip(sam2, _per_frame(encode_frames(sam2, video.images)), 0,
                                   seed_prompt(sam2, tokens), multimask=True)
    return predictions, reference


def test_seg_token_seed_and_propagation_match_the_engine(sam2, video):
    predictions, reference = _seeded_both_ways(sam2, video, 0)
    assert [p.logits.shape[1] for p in predictions] == [3] * T
    for prediction, frame in zip(predictions, reference.frames):
        _close(prediction.kept[0, 0], frame.low_res_logits)
        assert float(prediction.ious.max()) == pytest.approx(frame.score, abs=1e-4)


def test_one_mask_per_tracked_frame_matches_the_engine(video):
    """The synthetic model's SAM 2 decodes one mask on tracked frames (``multimask_output_for_tracking``
    off); training tracks the way inference then does."""
    sam2 = tiny_sam2(image_size=128, seed=3).eval()
    sam2.multimask_output_for_tracking = False
    predictions, reference = _seeded_both_ways(sam2, video, 1)
    assert [p.logits.shape[1] for p in predictions] == [3] + [1] * (T - 1)
    for prediction, frame in zip(predictions, reference.frames):
        _close(prediction.kept[0, 0], frame.low_res_logits)


@pytest.mark.parametrize("click", [{"points": [(20.0, 30.0)], "labels": [1]}, {"box": (5.0, 8.0, 40.0, 30.0)}])
def test_click_on_a_later_frame_tracks_both_ways_like_the_engine(sam2, video, click):
    engine = Sam2Engine(sam2)
    reference = engine.segment_prompt(list(video.images), list(range(T)), 2, **click)
    sparse, multimask = engine.click_prompt(W, H, **click)
    assert multimask is ("points" in click)
    with torch.no_grad():
        predictions = segment_clip(sam2, _per_frame(encode_frames(sam2, video.images)), 2, sparse, multimask)
    for prediction, frame in zip(predictions, reference.frames):
        _close(prediction.kept[0, 0], frame.low_res_logits)


def test_objects_in_a_batch_keep_their_own_memory(sam2, video):
    tokens = torch.randn(2, 2, sam2.hidden_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = encode_frames(sam2, video.images)
        both = segment_clip(sam2, _per_frame(features, 2), 0, seed_prompt(sam2, tokens), True)
        second = segment_clip(sam2, _per_frame(features), 0, seed_prompt(sam2, tokens[1:]), True)
    for joint, alone in zip(both, second):
        _close(joint.logits[1], alone.logits[0])


def test_a_loss_on_the_last_frame_reaches_the_seed_tokens_through_memory(sam2, video):
    tokens = torch.randn(1, 2, sam2.hidden_dim, requires_grad=True)
    sam2.zero_grad()
    predictions = segment_clip(sam2, _per_frame(encode_frames(sam2, video.images)), 0,
                               seed_prompt(sam2, tokens), True)
    predictions[-1].logits.sum().backward()
    assert tokens.grad is not None and float(tokens.grad.abs().sum()) > 0
    memory_grads = [p.grad for p in sam2.memory_encoder.parameters() if p.grad is not None]
    assert memory_grads and any(float(g.abs().sum()) > 0 for g in memory_grads)
    sam2.zero_grad()


def test_bad_seed_or_batch_is_refused(sam2, video):
    features = [encode_frames(sam2, video.images[:1])]
    tokens = seed_prompt(sam2, torch.zeros(1, 2, sam2.hidden_dim))
    with pytest.raises(Sam2PathError, match="outside the 1 frames"):
        segment_clip(sam2, features, 1, tokens, True)
    with pytest.raises(Sam2PathError, match="features of 1 objects"):
        segment_clip(sam2, features, 0, torch.cat([tokens, tokens]), True)
    assert np.isfinite(segment_clip(sam2, features, 0, tokens, True)[0].logits.detach().numpy()).all()
