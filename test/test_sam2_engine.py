"""Sam2Engine against SAM 2's own building blocks, on a tiny random SAM 2.1 (CPU).

The reference for whole windows is pip sam2's ``SAM2Base.track_step`` loop run the
way SAM 2's video predictor runs it (prompt frame decoded without memory, its memory
encoded as a prompted frame, then frame-by-frame propagation), with the ``<SEG>``
tokens appended to the prompt encoder's sparse output on the seed frame, which is
what UniPixel's modified sam2 does.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unipixel_ros.geometry import sam_preprocess
from unipixel_ros.model.feature_cache import CacheCapacityError, FeatureCache
from unipixel_ros.model.sam2_engine import (ClickError, FrameError, Sam2Engine, SegTokenError, TrackError,
                                            TrackState)
from unipixel_ros.model.sam2_source import tiny_sam2

IMAGE_SIZE = 128
H, W = 96, 128


def _with_object_bias(sam: torch.nn.Module, bias: float) -> torch.nn.Module:
    """Random weights give object logits near 0; pin SAM 2's presence decision one way."""
    with torch.no_grad():
        sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(bias)
    return sam


@pytest.fixture(scope="module")
def sam():
    torch.set_num_threads(1)
    return _with_object_bias(tiny_sam2(IMAGE_SIZE, seed=0), 5.0)


def _frames(n: int, seed: int = 0, size: tuple[int, int] = (H, W)) -> list[np.ndarray]:
    """Smooth random RGB frames (so the image encoder sees structure, not only noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (6, 8, 3)).astype(np.float32)
        big = F.interpolate(torch.from_numpy(small).permute(2, 0, 1)[None], size=size, mode="bilinear")
        out.append(big[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
    return out


def _keys(n: int, camera: str = "cam") -> list[tuple[str, int]]:
    return [(camera, i) for i in range(n)]


def _tokens(seed: int) -> torch.Tensor:
    return torch.randn(2, 256, generator=torch.Generator().manual_seed(seed))


@contextmanager
def _seg_tokens_appended(sam, tokens: torch.Tensor):
    """Make sam's prompt encoder append ``tokens`` to its sparse output, as UniPixel's sam2 does."""
    encoder = sam.sam_prompt_encoder
    original = encoder.forward

    def forward(points, boxes, masks):
        sparse, dense = original(points, boxes, masks)
        return torch.cat([sparse, tokens[None].to(sparse.dtype)], dim=1), dense

    with mock.patch.object(encoder, "forward", forward):
        yield


@torch.inference_mode()
def _reference_window(sam, frames, seed: int, tokens=None, point_inputs=None) -> dict[int, torch.Tensor]:
    """Low-resolution mask logits per frame from pip sam2's own tracking loop."""
    images = torch.cat([sam_preprocess(f, IMAGE_SIZE) for f in frames])
    backbone = sam.forward_image(images)

    def frame_features(i):
        one = {k: [t[i:i + 1] for t in v] for k, v in backbone.items() if k in ("backbone_fpn", "vision_pos_enc")}
        _, feats, pos, sizes = sam._prepare_backbone_features(one)
        return feats, pos, sizes

    outputs = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    n = len(frames)
    feats, pos, sizes = frame_features(seed)
    with _seg_tokens_appended(sam, tokens) if tokens is not None else nullcontext():
        out = sam.track_step(frame_idx=seed, is_init_cond_frame=True, current_vision_feats=feats,
                             current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=point_inputs,
                             mask_inputs=None, output_dict=outputs, num_frames=n, run_mem_encoder=False)
    high = F.interpolate(out["pred_masks"], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    out["maskmem_features"], out["maskmem_pos_enc"] = sam._encode_new_memory(
        feats, sizes, high, out["object_score_logits"], is_mask_from_pts=True)
    outputs["cond_frame_outputs"][seed] = out
    logits = {seed: out["pred_masks"][0, 0]}
    for reverse, order in ((False, range(seed + 1, n)), (True, range(seed - 1, -1, -1))):
        for t in order:
            feats, pos, sizes = frame_features(t)
            out = sam.track_step(frame_idx=t, is_init_cond_frame=False, current_vision_feats=feats,
                                 current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                                 mask_inputs=None, output_dict=outputs, num_frames=n, track_in_reverse=reverse)
            outputs["non_cond_frame_outputs"][t] = out
            logits[t] = out["pred_masks"][0, 0]
    return logits


def _assert_same_logits(result, reference: dict[int, torch.Tensor]) -> None:
    assert len(result.frames) == len(reference)
    for t, frame in enumerate(result.frames):
        torch.testing.assert_close(frame.low_res_logits, reference[t], rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- <SEG> tokens

def test_masks_come_one_per_frame_at_each_frames_size(sam):
    frames = _frames(2) + _frames(1, seed=1, size=(40, 56))
    result = Sam2Engine(sam).segment_seg_tokens(frames, _keys(3), _tokens(0))
    assert [f.mask.shape for f in result.frames] == [(H, W), (H, W), (40, 56)]
    assert all(f.mask.dtype == bool for f in result.frames)
    # The mask is SAM's low-resolution logits resized to the frame and thresholded at 0.
    low = result.frames[2].low_res_logits
    expected = F.interpolate(low[None, None], size=(40, 56), mode="bilinear", align_corners=False)[0, 0] > 0
    np.testing.assert_array_equal(result.frames[2].mask, expected.numpy())


@torch.inference_mode()
def test_seed_frame_equals_prompt_encoder_with_tokens_then_mask_decoder(sam):
    frames, tokens = _frames(3), _tokens(1)
    result = Sam2Engine(sam).segment_seg_tokens(frames, _keys(3), tokens)

    backbone = sam.forward_image(sam_preprocess(frames[0], IMAGE_SIZE))
    _, feats, _, sizes = sam._prepare_backbone_features(backbone)
    pix = (feats[-1] + sam.no_mem_embed).permute(1, 2, 0).reshape(1, 256, *sizes[-1])
    pad = (torch.zeros(1, 1, 2), -torch.ones(1, 1, dtype=torch.int32))
    sparse, dense = sam.sam_prompt_encoder(points=pad, boxes=None, masks=None)
    sparse = torch.cat([sparse, tokens[None]], dim=1)
    assert sparse.shape == (1, 4, 256)  # padding point, the encoder's own padding row, 2 tokens
    masks, iou, _, score = sam.sam_mask_decoder(
        image_embeddings=pix, image_pe=sam.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False,
        high_res_features=[f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(feats[:2], sizes[:2])])
    best = masks[0, int(iou[0].argmax())]

    seed = result.frames[0]
    assert score.item() > 0 and seed.visible
    torch.testing.assert_close(seed.low_res_logits, best, rtol=1e-5, atol=1e-5)
    assert seed.score == pytest.approx(iou.max().item(), abs=1e-5)
    assert seed.object_score == pytest.approx(score.item(), abs=1e-5)


def test_seg_window_equals_sam2_tracking_loop(sam):
    frames, tokens = _frames(4), _tokens(2)
    result = Sam2Engine(sam).segment_seg_tokens(frames, _keys(4), tokens)
    _assert_same_logits(result, _reference_window(sam, frames, 0, tokens=tokens))


def test_propagation_reads_the_seed_frames_memory(sam):
    frames = _frames(2)
    engine = Sam2Engine(sam)
    a = engine.segment_seg_tokens(frames, _keys(2), _tokens(3))
    b = engine.segment_seg_tokens(frames, _keys(2), _tokens(4))
    assert not torch.allclose(a.frames[0].low_res_logits, b.frames[0].low_res_logits)
    # Frame 1 gets no prompt: only the memory of frame 0 can make it differ.
    assert (a.frames[1].low_res_logits - b.frames[1].low_res_logits).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(2, 2, 256), (2, 128), (256,)])
def test_seg_tokens_of_other_shapes_are_rejected(sam, shape):
    with pytest.raises(SegTokenError, match="one object"):
        Sam2Engine(sam).segment_seg_tokens(_frames(1), _keys(1), torch.zeros(shape))


# --------------------------------------------------------------------------- clicks

def test_click_window_equals_sam2_tracking_loop_forward_and_backward(sam):
    frames = _frames(4, seed=5)
    x, y = 50.0, 30.0
    result = Sam2Engine(sam).segment_prompt(frames, _keys(4), 2, points=[(x, y)], labels=[1])
    points = {"point_coords": torch.tensor([[[x * IMAGE_SIZE / W, y * IMAGE_SIZE / H]]]),
              "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    _assert_same_logits(result, _reference_window(sam, frames, 2, point_inputs=points))


def test_box_on_newest_frame_equals_sam2_tracking_loop(sam):
    frames = _frames(3, seed=6)
    box = (10.0, 20.0, 90.0, 70.0)
    result = Sam2Engine(sam).segment_prompt(frames, _keys(3), 2, box=box)
    corners = [[box[0] * IMAGE_SIZE / W, box[1] * IMAGE_SIZE / H], [box[2] * IMAGE_SIZE / W, box[3] * IMAGE_SIZE / H]]
    points = {"point_coords": torch.tensor([corners]), "point_labels": torch.tensor([[2, 3]], dtype=torch.int32)}
    _assert_same_logits(result, _reference_window(sam, frames, 2, point_inputs=points))


def test_click_reaches_the_prompt_encoder_in_sam_frame_pixels(sam):
    seen = []

    def spy(module, args, kwargs):
        seen.append(kwargs["points"])

    handle = sam.sam_prompt_encoder.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        Sam2Engine(sam).segment_prompt(_frames(2), _keys(2), 1, points=[(32.0, 24.0), (100.0, 90.0)],
                                       labels=[1, 0], box=(8.0, 12.0, 64.0, 48.0))
    finally:
        handle.remove()
    coords, labels = seen[0]  # the first encoder call embeds the click; later ones are padding
    # x * 128 / 128 and y * 128 / 96: box corners first, then the points.
    expected = torch.tensor([[[8.0, 16.0], [64.0, 64.0], [32.0, 32.0], [100.0, 120.0]]])
    torch.testing.assert_close(coords, expected, rtol=0, atol=0)
    assert labels.tolist() == [[2, 3, 1, 0]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(frame_index=2, points=[(1.0, 1.0)], labels=[1]), "outside"),
    (dict(frame_index=0, points=[(1.0, 1.0)], labels=[]), "labels"),
    (dict(frame_index=0), "at least one point"),
    (dict(frame_index=0, points=[(1.0, 1.0)], labels=[2]), "labels must be"),
    (dict(frame_index=0, box=(5.0, 5.0, 1.0, 9.0)), "top-left"),
    (dict(frame_index=0, points=[(float("nan"), 1.0)], labels=[1]), "finite"),
])
def test_bad_clicks_are_rejected_with_a_reason(sam, kwargs, message):
    with pytest.raises(ClickError, match=message):
        Sam2Engine(sam).segment_prompt(_frames(2), _keys(2), **kwargs)


# --------------------------------------------------------------------------- feature cache

def test_second_query_on_the_same_frames_encodes_nothing_and_agrees(sam):
    frames = _frames(3, seed=7)
    engine = Sam2Engine(sam)
    first = engine.segment_seg_tokens(frames, _keys(3), _tokens(5))
    assert engine.encode_count == 3
    second = engine.segment_seg_tokens(frames, _keys(3), _tokens(5))
    assert engine.encode_count == 3
    for a, b in zip(first.frames, second.frames):
        assert torch.equal(a.low_res_logits, b.low_res_logits)
        np.testing.assert_array_equal(a.mask, b.mask)
    engine.segment_prompt(frames, _keys(3), 2, points=[(5.0, 5.0)], labels=[1])
    assert engine.encode_count == 3


def test_cache_evicts_least_recently_used_frames(sam):
    frames = _frames(3, seed=8)
    engine = Sam2Engine(sam, cache=FeatureCache(2))
    engine.features(frames[:2], _keys(2))
    engine.features(frames[:1], _keys(1))          # frame 0 is now the most recent
    engine.features(frames[2:], [("cam", 2)])      # evicts frame 1
    assert engine.cache.keys() == [("cam", 0), ("cam", 2)]
    engine.features(frames[:1], _keys(1))
    assert engine.encode_count == 3
    engine.features(frames[1:2], [("cam", 1)])
    assert engine.encode_count == 4


def test_cache_rejects_zero_capacity():
    with pytest.raises(CacheCapacityError):
        FeatureCache(0)


@pytest.mark.parametrize("frames, keys, message", [
    ([], [], "no frames"),
    ([np.zeros((4, 4, 3), np.uint8)], [], "frame keys"),
    ([np.zeros((4, 4, 3), np.float32)], [0], "RGB uint8"),
    ([np.zeros((4, 4), np.uint8)], [0], "RGB uint8"),
])
def test_bad_frames_are_rejected_with_a_reason(sam, frames, keys, message):
    with pytest.raises(FrameError, match=message):
        Sam2Engine(sam).features(frames, keys)


# --------------------------------------------------------------------------- tracking

def test_tracking_frame_by_frame_equals_window_propagation(sam):
    # 20 frames: past SAM 2's 16-pointer limit, so the live pointer window and the
    # window's agree, and the state has pruned old memory along the way.
    frames, keys, tokens = _frames(20, seed=9), _keys(20), _tokens(6)
    engine = Sam2Engine(sam, cache=FeatureCache(32))
    window = engine.segment_seg_tokens(frames, keys, tokens)
    live = engine.segment_seg_tokens(frames[:1], keys[:1], tokens)
    stepped = [live.frames[0]] + [engine.track(live.state, f, k) for f, k in zip(frames[1:], keys[1:])]
    assert live.state.last_index == 19
    for a, b in zip(window.frames, stepped):
        torch.testing.assert_close(a.low_res_logits, b.low_res_logits, rtol=1e-5, atol=1e-5)


def test_memory_per_object_stays_bounded(sam):
    frames = _frames(4, seed=10)
    engine = Sam2Engine(sam, cache=FeatureCache(8))
    state = engine.segment_seg_tokens(frames, _keys(4), _tokens(7)).state
    sizes = []
    for step in range(50):
        engine.track(state, frames[step % 4], ("live", step))
        sizes.append(state.nbytes())
    with_memory = [t for t, e in state.recent.items() if "maskmem_features" in e]
    assert len(state.cond) == 1
    assert len(with_memory) == sam.num_maskmem - 1
    assert len(state.recent) == sam.max_obj_ptrs_in_encoder - 1
    assert min(state.recent) == state.last_index - (sam.max_obj_ptrs_in_encoder - 2)
    assert sizes[20:] == [sizes[20]] * 30
    assert len(engine.cache) == 8


def test_absent_object_is_reported_not_visible_and_kept():
    sam = _with_object_bias(tiny_sam2(IMAGE_SIZE, seed=0), -5.0)
    frames = _frames(2, seed=11)
    engine = Sam2Engine(sam)
    result = engine.segment_seg_tokens(frames, _keys(2), _tokens(8))
    step = engine.track(result.state, frames[0], ("live", 0))
    for frame in [*result.frames, step]:
        assert not frame.visible and not frame.mask.any()
    assert result.state.last_index == 2 and 2 in result.state.recent


def test_tracking_needs_a_prompted_state(sam):
    with pytest.raises(TrackError):
        Sam2Engine(sam).track(TrackState(cond={}), _frames(1)[0], "k")


# --------------------------------------------------------------------------- the module is left alone

def _module_layout(module: torch.nn.Module) -> dict[str, tuple]:
    return {name: (tuple(sorted(vars(m))), tuple(m._parameters), tuple(m._buffers), tuple(m._modules))
            for name, m in module.named_modules()}


def test_calls_add_nothing_to_the_sam2_module(sam):
    before = _module_layout(sam)
    params = {k: v.clone() for k, v in sam.state_dict().items()}
    engine = Sam2Engine(sam)
    frames = _frames(3, seed=12)
    result = engine.segment_seg_tokens(frames, _keys(3), _tokens(9))
    engine.segment_prompt(frames, _keys(3), 2, box=(4.0, 4.0, 60.0, 50.0))
    engine.track(result.state, frames[0], ("live", 0))
    assert _module_layout(sam) == before
    assert all(torch.equal(v, params[k]) for k, v in sam.state_dict().items())


# --------------------------------------------------------------------------- precision and devices

def _low_precision_copy(sam, stored: torch.dtype, device: str = "cpu") -> torch.nn.Module:
    copy = tiny_sam2(IMAGE_SIZE, seed=0)
    copy.load_state_dict(sam.state_dict())
    return copy.to(device=device, dtype=stored)


def _assert_close_to(reference, result, tolerance: float) -> None:
    for a, b in zip(reference.frames, result.frames):
        assert b.mask.shape == (H, W) and b.visible
        diff = (a.low_res_logits - b.low_res_logits.cpu()).abs().max()
        assert diff <= tolerance * a.low_res_logits.abs().max()


@pytest.mark.parametrize("stored, compute", [
    (torch.float32, torch.bfloat16), (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float16), (torch.float16, torch.float16),
])
def test_half_precision_stays_close_to_float32(sam, stored, compute):
    frames, tokens = _frames(3, seed=13), _tokens(10)
    reference = Sam2Engine(sam).segment_seg_tokens(frames, _keys(3), tokens)
    engine = Sam2Engine(_low_precision_copy(sam, stored), dtype=compute)
    result = engine.segment_seg_tokens(frames, _keys(3), tokens)
    assert engine.cache.get(("cam", 0)).image_embed.dtype == compute
    _assert_close_to(reference, result, 0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("stored, compute, tolerance", [
    (torch.float32, torch.float32, 0.01), (torch.bfloat16, torch.bfloat16, 0.05)])
def test_cuda_matches_cpu(sam, stored, compute, tolerance):
    frames, tokens = _frames(3, seed=14), _tokens(11)
    reference = Sam2Engine(sam).segment_seg_tokens(frames, _keys(3), tokens)
    engine = Sam2Engine(_low_precision_copy(sam, stored, "cuda"), dtype=compute)
    result = engine.segment_seg_tokens(frames, _keys(3), tokens)
    assert result.frames[0].low_res_logits.device.type == "cuda"
    _assert_close_to(reference, result, tolerance)
    tracked = engine.track(result.state, frames[0], ("live", 0))
    assert tracked.mask.shape == (H, W)
