"""Batched SAM 2 steps (``Sam2Engine.track_many``, ``segment_seg_tokens_many``) against one object at a time.

The per-object path (``Sam2Engine.track``, ``segment_seg_tokens``: SAM 2's own
``_prepare_memory_conditioned_features`` for a single object) is the reference: a batched
step must give every object the same mask, logits, scores and memory. Run on the tiny
random SAM 2.1 and on SAM 2.1 hiera-b+ (UniPixel's config) with random weights, both at
128 px so that a test takes seconds.

Random weights decide presence by a logit near one value for every frame; the presence
head is rescaled here (weight x ``spread``, bias re-centred) so that objects go lost and
are found again on these frames, and the mask hypernetworks are scaled as
``tiny_sam2`` does, so mask logits spread over several units.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.model.config import PUBLISHED_SAM2_CONFIG, resolve_sam2_config
from unipixel_ros.model.sam2_engine import FrameMask, Sam2Engine, SegTokenError, TrackError, TrackState
from unipixel_ros.model.sam2_source import build_sam2_model, tiny_sam2
from unipixel_ros.pipeline import UniPixelPipeline, frame_key

IMAGE_SIZE = 128
H, W = 48, 64
LOGIT_TOL = 1e-4


def _pin_presence(sam: torch.nn.Module, spread: float, centre: float) -> torch.nn.Module:
    """Presence logit -> spread * (logit - centre): lost on some frames, found on others."""
    head = sam.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.weight.mul_(spread)
        head.bias.mul_(spread).sub_(spread * centre)
    return sam


def _tiny() -> torch.nn.Module:
    return _pin_presence(tiny_sam2(IMAGE_SIZE, seed=0), spread=200.0, centre=9.82)


def _bplus() -> torch.nn.Module:
    torch.manual_seed(0)
    config, overrides = resolve_sam2_config(PUBLISHED_SAM2_CONFIG)
    sam = build_sam2_model(config, IMAGE_SIZE, overrides)
    with torch.no_grad():
        for mlp in sam.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30.0)
    return _pin_presence(sam, spread=100.0, centre=-0.06)


MODELS = {"tiny": _tiny, "b+": _bplus}
# Frames of the tracking stream: long enough on the tiny model for every object's memory to fill
# up (the steady layout), shorter at b+ size, whose steps cost ten times more.
STREAM_FRAMES = {"tiny": 27, "b+": 14}


@pytest.fixture(scope="module", params=list(MODELS))
def model_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def sam(model_name: str) -> torch.nn.Module:
    torch.set_num_threads(1)
    return MODELS[model_name]()


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random RGB frames (structure for the image encoder, not only noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = torch.from_numpy(rng.integers(0, 256, (6, 8, 3)).astype(np.float32)).permute(2, 0, 1)[None]
        big = F.interpolate(small, size=(H, W), mode="bilinear")[0].permute(1, 2, 0)
        out.append(big.round().clamp(0, 255).to(torch.uint8).numpy())
    return out


def _tokens(k: int, seed: int) -> torch.Tensor:
    return torch.randn(k, 2, 256, generator=torch.Generator().manual_seed(seed))


@contextmanager
def _attention_calls(sam: torch.nn.Module) -> Iterator[list[int]]:
    """Counts calls of SAM 2's memory attention (one entry per call: its batch size)."""
    calls: list[int] = []
    handle = sam.memory_attention.register_forward_hook(lambda _m, _a, kw, out: calls.append(out.shape[1]),
                                                        with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def _assert_same_frame(batched: FrameMask, single: FrameMask, what: str) -> None:
    assert np.array_equal(batched.mask, single.mask), f"{what}: masks differ"
    assert batched.visible == single.visible, what
    diff = float((batched.low_res_logits - single.low_res_logits).abs().max())
    assert diff <= LOGIT_TOL, f"{what}: logits differ by {diff}"
    assert batched.score == pytest.approx(single.score, abs=LOGIT_TOL), what
    assert batched.object_score == pytest.approx(single.object_score, abs=LOGIT_TOL), what


def _assert_same_memory(batched: TrackState, single: TrackState, what: str) -> None:
    assert batched.last_index == single.last_index, what
    for part in ("cond", "recent"):
        mine, theirs = getattr(batched, part), getattr(single, part)
        assert mine.keys() == theirs.keys(), f"{what}: {part} frames {sorted(mine)} vs {sorted(theirs)}"
        for t in mine:
            assert mine[t].keys() == theirs[t].keys(), f"{what}: {part}[{t}] entries"
            for name in mine[t]:
                a, b = mine[t][name], theirs[t][name]
                for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                    assert x.shape == y.shape, f"{what}: {part}[{t}][{name}] shape"
                    diff = float((x.float() - y.float()).abs().max())
                    assert diff <= LOGIT_TOL, f"{what}: {part}[{t}][{name}] differs by {diff}"
    assert batched.nbytes() == single.nbytes(), f"{what}: memory sizes differ"


def test_batched_tracking_equals_per_object_tracking(sam, model_name: str) -> None:
    """Objects kept at different times (a <SEG>, a click seeded mid-window, a late <SEG>), lost and
    found again, one removed mid-stream: every batched step equals stepping each object alone, and
    once their memories have filled up all objects share one memory-attention call."""
    engine = Sam2Engine(sam)
    frames = _frames(STREAM_FRAMES[model_name])
    keys = [("cam", t) for t in range(len(frames))]
    # Frame at which each object is kept (its window ends just before), as a query would add it.
    kept = {3: engine.segment_seg_tokens(frames[0:3], keys[0:3], _tokens(1, 1)[0]).state,
            5: engine.segment_prompt(frames[2:5], keys[2:5], 1, points=[(20.0, 30.0)], labels=[1]).state,
            7: engine.segment_seg_tokens(frames[5:7], keys[5:7], _tokens(1, 2)[0]).state}
    removed_at = 10                                   # the first object is removed before this frame
    objects: dict[int, tuple[TrackState, TrackState]] = {}     # kept at -> (batched, alone) states
    seen: dict[int, list[bool]] = {}
    calls_per_frame: dict[int, list[int]] = {}
    for t in range(3, len(frames)):
        if t in kept:
            objects[t] = (kept[t], copy.deepcopy(kept[t]))
            seen[t] = []
        if t == removed_at:
            del objects[3]
        with _attention_calls(sam) as calls:
            stepped = engine.track_many([b for b, _ in objects.values()], frames[t], keys[t])
        calls_per_frame[t] = calls
        for (name, (_, alone)), result in zip(objects.items(), stepped):
            _assert_same_frame(result, engine.track(alone, frames[t], keys[t]), f"object {name} on frame {t}")
            seen[name].append(result.visible)
        assert sum(calls) == len(objects), f"frame {t}: memory attention ran for {calls} objects"
    for name, (batched, alone) in objects.items():
        _assert_same_memory(batched, alone, f"object {name}")

    # What the scenario is meant to cover did happen.
    found_again = [n for n, v in seen.items() if any(not a and b for i, a in enumerate(v) for b in v[i + 1:])]
    assert found_again, f"no object was lost and found again: {seen}"
    assert any(len(calls) > 1 for calls in calls_per_frame.values()), "memory layouts never differed"
    newest_kept = max(kept) - 2                       # first frame of the last object's window
    if len(frames) - newest_kept > max(sam.num_maskmem, sam.max_obj_ptrs_in_encoder):
        assert calls_per_frame[len(frames) - 1] == [len(objects)], "steady objects did not share one call"


def test_a_state_given_twice_or_without_a_prompt_is_refused(sam) -> None:
    engine = Sam2Engine(sam)
    frames = _frames(2)
    state = engine.segment_seg_tokens(frames[:1], [("cam", 0)], _tokens(1, 3)[0]).state
    with pytest.raises(TrackError, match="twice"):
        engine.track_many([state, state], frames[1], ("cam", 1))
    with pytest.raises(TrackError, match="state 1 has no prompted frame"):
        engine.track_many([state, TrackState(cond={})], frames[1], ("cam", 1))
    assert state.last_index == 0                     # refused before anything was stepped
    assert engine.track_many([], frames[1], ("cam", 1)) == []


def test_batched_propagation_equals_single_propagations(sam) -> None:
    """Three <SEG> objects of one answer propagate through the window in one step per frame, each
    with the masks, scores and memory it gets alone."""
    engine = Sam2Engine(sam)
    frames = _frames(5, seed=3)
    keys = [("cam", t) for t in range(len(frames))]
    tokens = _tokens(3, seed=4)
    with _attention_calls(sam) as calls:
        together = engine.segment_seg_tokens_many(frames, keys, tokens)
    assert calls == [3] * (len(frames) - 1)           # one call per propagated frame, for all three
    alone = [engine.segment_seg_tokens(frames, keys, t) for t in tokens]
    assert len(together) == 3
    for k, (b, s) in enumerate(zip(together, alone)):
        for t, (fb, fs) in enumerate(zip(b.frames, s.frames)):
            _assert_same_frame(fb, fs, f"object {k} on frame {t}")
        _assert_same_memory(b.state, s.state, f"object {k}")
    assert len({round(o.frames[0].object_score, 3) for o in together}) == 3, "the objects were alike"


def test_seg_tokens_of_no_object_or_a_bad_shape(sam) -> None:
    engine = Sam2Engine(sam)
    frames = _frames(1)
    assert engine.segment_seg_tokens_many(frames, [("cam", 0)], torch.zeros(0, 2, 256)) == []
    with pytest.raises(SegTokenError, match=r"\[K, S, 256\]"):
        engine.segment_seg_tokens_many(frames, [("cam", 0)], torch.zeros(2, 256))


def test_the_pipeline_steps_a_cameras_objects_in_one_batched_step() -> None:
    """``UniPixelPipeline.track`` (what the node's per-camera step calls): one memory-attention call
    per frame for the camera's objects, each recorded in the bank with its own mask."""
    sam = _tiny()
    engine = Sam2Engine(sam)
    pipeline = UniPixelPipeline(model=None, processor=None, engine=engine)
    frames = _frames(4, seed=5)
    stamps = [1000 + t for t in range(len(frames))]
    bank = ObjectMemoryBank(max_objects=8, max_frames_per_object=8)
    segmented = engine.segment_seg_tokens_many(frames[:2], [("cam", s) for s in stamps[:2]], _tokens(3, seed=6))
    alone: dict[int, TrackState] = {}
    for k, seg in enumerate(segmented):
        object_id = bank.add(f"object {k}")
        bank.attach_tracking(object_id, seg.state)
        alone[object_id] = copy.deepcopy(seg.state)
    for frame, stamp in zip(frames[2:], stamps[2:]):
        with _attention_calls(sam) as calls:
            tracked = pipeline.track(bank, frame, stamp)
        assert calls == [3]
        for object_id, state in alone.items():
            reference = engine.track(state, frame, frame_key(frame, stamp))
            assert np.array_equal(tracked[object_id].mask, reference.mask)
            assert np.array_equal(bank.get(object_id).masks[-1], reference.mask)
            assert bank.get(object_id).stamps[-1] == stamp
