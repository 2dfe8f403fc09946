"""Sam2Engine.segment_mask against pip sam2's own tracking loop with a mask prompt (tiny SAM 2.1, CPU).

The reference runs ``SAM2Base.track_step`` the way SAM 2's video predictor runs a mask
given with ``add_new_mask``: the mask resized to the SAM frame (bilinear, antialiased,
>= 0.5) is the seed frame's output, its memory is encoded as a prompted frame, then the
other frames are tracked forward and backward.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unipixel_ros.geometry import sam_preprocess
from unipixel_ros.model.sam2_engine import ClickError, Sam2Engine
from unipixel_ros.model.tiny import build_tiny_unipixel

H, W = 40, 56


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    return build_tiny_unipixel()[0].sam2


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (5, 7, 3)).astype(np.float32)
        big = F.interpolate(torch.from_numpy(small).permute(2, 0, 1)[None], size=(H, W), mode="bilinear")
        out.append(big[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
    return out


def _mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[8:30, 10:27] = True
    mask[12:16, 30:40] = True
    return mask


@torch.inference_mode()
def _reference(sam, frames: list[np.ndarray], seed: int, mask: np.ndarray) -> dict[int, torch.Tensor]:
    size = sam.image_size
    backbone = sam.forward_image(torch.cat([sam_preprocess(f, size) for f in frames]))

    def features(i):
        one = {k: [t[i:i + 1] for t in v] for k, v in backbone.items() if k in ("backbone_fpn", "vision_pos_enc")}
        _, feats, pos, sizes = sam._prepare_backbone_features(one)
        return feats, pos, sizes

    mask_inputs = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True) >= 0.5
    outputs = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    feats, pos, sizes = features(seed)
    out = sam.track_step(frame_idx=seed, is_init_cond_frame=True, current_vision_feats=feats,
                         current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                         mask_inputs=mask_inputs.float(), output_dict=outputs, num_frames=len(frames),
                         run_mem_encoder=False)
    high = F.interpolate(out["pred_masks"], size=(size, size), mode="bilinear", align_corners=False)
    out["maskmem_features"], out["maskmem_pos_enc"] = sam._encode_new_memory(
        feats, sizes, high, out["object_score_logits"], is_mask_from_pts=True)
    outputs["cond_frame_outputs"][seed] = out
    logits = {seed: out["pred_masks"][0, 0]}
    for reverse, order in ((False, range(seed + 1, len(frames))), (True, range(seed - 1, -1, -1))):
        for t in order:
            feats, pos, sizes = features(t)
            out = sam.track_step(frame_idx=t, is_init_cond_frame=False, current_vision_feats=feats,
                                 current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                                 mask_inputs=None, output_dict=outputs, num_frames=len(frames),
                                 track_in_reverse=reverse)
            outputs["non_cond_frame_outputs"][t] = out
            logits[t] = out["pred_masks"][0, 0]
    return logits


def test_mask_window_equals_sam2_tracking_loop_and_keeps_the_drawn_mask(sam):
    frames, mask = _frames(4, seed=3), _mask()
    result = Sam2Engine(sam).segment_mask(frames, list(range(4)), 1, mask)
    reference = _reference(sam, frames, 1, mask)
    assert len(result.frames) == 4
    for t, frame in enumerate(result.frames):
        # The reference encodes the four frames in one backbone batch, the engine each frame on its
        # own: on some CPUs (AMD EPYC here) the two summation orders differ in the last bits, and
        # after the memory of three frames a logit can differ by 2.6e-4. A wrong memory, frame
        # order or mask encoding moves the logits by whole units.
        torch.testing.assert_close(frame.low_res_logits, reference[t], rtol=1e-3, atol=1e-3)
        assert frame.mask.shape == (H, W) and frame.mask.dtype == bool
    np.testing.assert_array_equal(result.frames[1].mask, mask)
    assert result.frames[1].visible and result.frames[1].score == 1.0
    assert set(result.state.cond) == {1} and result.state.last_index == 3


def test_a_mask_seeded_object_tracks_on(sam):
    frames = _frames(3, seed=4)
    engine = Sam2Engine(sam)
    state = engine.segment_mask(frames, list(range(3)), 2, _mask()).state
    step = engine.track(state, _frames(1, seed=9)[0], 99)
    assert step.mask.shape == (H, W) and state.last_index == 3


@pytest.mark.parametrize("frame, mask, message", [
    (3, _mask(), "frame_index 3 is outside the 3 frames"),
    (0, np.zeros((H, W), bool), "the mask is empty"),
    (0, np.ones((W, H), bool), r"mask of shape \(56, 40\) does not match the frame's \(40, 56\)"),
])
def test_bad_masks_are_rejected_with_a_reason(sam, frame, mask, message):
    with pytest.raises(ClickError, match=message):
        Sam2Engine(sam).segment_mask(_frames(3), list(range(3)), frame, mask)
