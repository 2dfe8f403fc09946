"""UniPixel's SAM 2.1 segmentation and tracking, on top of the unmodified pip ``sam2``.

What UniPixel asks of SAM 2, and how this engine does it with ``SAM2Base``'s own
building blocks (image encoder, memory attention, memory encoder, prompt encoder,
object-pointer projection) without patching the library:

* ``<SEG>``: the seg head's two 256-d tokens are appended to the sparse prompt of
  frame 0 (after the padding point rows SAM 2 uses when no click is given). Frame 0
  is an initial conditioning frame; whether three masks are decoded is SAM 2's own
  rule (``_use_multimask`` with no points). The result is encoded into memory and
  propagated forward through the other frames of the window, one object per
  ``<SEG>`` with its own memory, so no cross-object non-overlap step applies.
* A click or box (click-to-segment, no language model): SAM 2's point prompt on any
  frame of the window (a box is two points labelled 2 and 3, as SAM 2's video
  predictor feeds it), then propagation forward to the newest frame and backward to
  the oldest, in that order, as SAM 2's video predictor does when asked for both.
* A drawn mask: SAM 2's mask prompt (``use_mask_input_as_output_without_sam``, as every
  SAM 2.1 config sets it): the mask is that frame's output as given, encoded into
  memory, and propagated like a click.
* Tracking: a ``TrackState`` (plain data the caller owns, one per object) is stepped
  onto each new camera frame. A live stream is treated as a long video, so object
  pointers are normalised by SAM 2's pointer limit (16 frames), not by a window length.
* Many objects at once: ``track_many`` steps all objects of a camera onto a frame, and a
  window seeded with several objects propagates them together: one SAM 2 step per frame
  for all of them (see ``Sam2Engine._condition`` for how memories of different lengths
  are batched). Each object keeps its own memory, exactly as if stepped alone.

Every mask-decoder call with three-mask output goes through a ``MaskDecoderBackend``
(PyTorch by default; ONNX Runtime / TensorRT replace it). Single-mask decodes (a box,
several clicks, and the tracked frames of a SAM 2 built with
``multimask_output_for_tracking`` off, such as the synthetic model's) run SAM 2's torch
decoder directly: the exported graphs only reproduce the three-mask case the published
checkpoints use for ``<SEG>`` and tracking.

Image features are cached per frame key, so frames already tracked or queried are
never encoded again. Nothing per request is stored on any module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from torch import nn

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs, MaskDecoderBackend
from unipixel_ros.decoders.graph import padding_prompt, seed_prompt
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder
from unipixel_ros.geometry import logits_to_masks, point_to_sam, sam_preprocess, upsample_mask_logits
from unipixel_ros.model.feature_cache import FeatureCache, FrameFeatures

# SAM 2's point labels (prompt encoder embedding rows).
NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 0, 1, 2, 3

DEFAULT_CACHE_FRAMES = 32
DEFAULT_ENCODE_BATCH = 8


class FrameError(ValueError):
    """Frames or frame keys the engine cannot encode."""


class ClickError(ValueError):
    """A point or box prompt SAM 2 cannot take."""


class TrackError(ValueError):
    """A tracking state that cannot be stepped."""


class SegTokenError(ValueError):
    """``<SEG>`` tokens that are not one object's [S, C] prompt tokens."""


class EngineConfigError(ValueError):
    """A SAM 2 model or engine setting this engine cannot run."""


@dataclass(frozen=True)
class FrameMask:
    """One object on one frame."""

    mask: np.ndarray              # [H, W] bool at the frame's own resolution (logits > 0)
    score: float                  # SAM 2's predicted IoU of the mask
    object_score: float           # object-presence logit
    low_res_logits: torch.Tensor  # [S/4, S/4] float32 mask logits on the SAM frame

    @property
    def visible(self) -> bool:
        """SAM 2's own decision: the object is on this frame when its presence logit is > 0."""
        return self.object_score > 0


@dataclass
class TrackState:
    """SAM 2 memory of one object, stepped by ``Sam2Engine.track`` / ``track_many``; owned by the caller.

    Entries use SAM 2's key names (``maskmem_features``, ``maskmem_pos_enc``, ``obj_ptr``)
    because ``SAM2Base._prepare_memory_conditioned_features`` reads them. Only the
    entries SAM 2 can still read for the next frame are kept, so the size is bounded.
    One state must not be stepped from two threads at once.
    """

    cond: dict[int, dict[str, Any]]    # frame index -> memory of the prompted (seed) frame
    recent: dict[int, dict[str, Any]] = field(default_factory=dict)  # other frames' memory
    last_index: int = 0                # newest frame index segmented or tracked

    def output_dict(self) -> dict[str, dict[int, dict[str, Any]]]:
        """The view SAM 2's memory attention reads."""
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.recent}

    def nbytes(self) -> int:
        """Bytes held in tensors (the shared positional encoding counted once)."""
        seen: set[int] = set()
        total = 0
        for entry in (*self.cond.values(), *self.recent.values()):
            for value in entry.values():
                for t in (value if isinstance(value, list) else [value]):
                    if isinstance(t, torch.Tensor) and id(t) not in seen:
                        seen.add(id(t))
                        total += t.numel() * t.element_size()
        return total


@dataclass
class ObjectSegmentation:
    """One object segmented on every frame of a window, and its memory for tracking on."""

    frames: list[FrameMask]
    state: TrackState

    @property
    def masks(self) -> np.ndarray:
        """[T, H, W] bool (frames of one window share a size)."""
        return np.stack([f.mask for f in self.frames])


@dataclass(frozen=True)
class _Decoded:
    """K objects decoded on one frame."""

    masks: torch.Tensor         # [K, 1, S/4, S/4] float32, absent objects already NO_OBJ_SCORE
    iou: torch.Tensor           # [K, 1]
    obj_ptr: torch.Tensor       # [K, C]
    object_score: torch.Tensor  # [K, 1]


@dataclass(frozen=True)
class _MemoryInputs:
    """What SAM 2's memory attention is given for one object: the memory tokens SAM 2 selected."""

    memory: torch.Tensor        # [M, 1, C_mem]: spatial memories, then object-pointer tokens
    memory_pos: torch.Tensor    # [M, 1, C_mem]
    num_obj_ptr_tokens: int

    @property
    def layout(self) -> tuple[int, int]:
        """Objects of equal layout can share one memory-attention call."""
        return int(self.memory.shape[0]), self.num_obj_ptr_tokens


class _MemoryRecorder:
    """Stands in for SAM 2's memory attention: records what it is given, attends to nothing."""

    def __init__(self) -> None:
        self.inputs: _MemoryInputs | None = None

    def __call__(self, *, curr: list[torch.Tensor], curr_pos: list[torch.Tensor], memory: torch.Tensor,
                 memory_pos: torch.Tensor, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        self.inputs = _MemoryInputs(memory, memory_pos, int(num_obj_ptr_tokens))
        return curr[0]          # shaped as the attention output; the caller discards it


class _MemorySelection:
    """A SAM 2 model as its memory-selection code reads it, with the memory attention recorded.

    Running ``SAM2Base._prepare_memory_conditioned_features`` on this view selects and
    embeds one object's memory by SAM 2's own rules (conditioning frames, strided recent
    frames, object pointers and their temporal encodings) and hands it to the recorder;
    the model itself is not touched.
    """

    def __init__(self, sam2: nn.Module, recorder: _MemoryRecorder):
        self._sam2 = sam2
        self.memory_attention = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sam2, name)


def _batch_major(rows: torch.Tensor | list[torch.Tensor], count: int = 1) -> torch.Tensor:
    """Sequences [L, C] (one repeated ``count`` times, or a list) as SAM 2's [L, B, C], stored batch-first.

    SAM 2's memory attention turns [L, B, C] batch-first before its projections; stored
    this way that view is contiguous, where a [L, B, C]-contiguous batch would be copied
    in every projection.
    """
    stacked = torch.stack(rows) if isinstance(rows, list) else rows.unsqueeze(0).expand(count, -1, -1).contiguous()
    return stacked.transpose(0, 1)


def _own(t: torch.Tensor, i: int) -> torch.Tensor:
    """Row ``i`` of a batch in its own storage, so one object's memory frees on its own."""
    return t if t.shape[0] == 1 else t[i:i + 1].clone()


def object_pointer(sam2: nn.Module, token: torch.Tensor, object_score: torch.Tensor) -> torch.Tensor:
    """SAM 2's object pointer [B, C] from the chosen output token [B, C], with its occlusion handling."""
    ptr = sam2.obj_ptr_proj(token)
    if sam2.pred_obj_scores:
        present = object_score.sigmoid() if sam2.soft_no_obj_ptr else (object_score > 0).to(ptr.dtype)
        if sam2.fixed_no_obj_ptr:
            ptr = present * ptr
        ptr = ptr + (1 - present) * sam2.no_obj_ptr
    return ptr


def _check_frames(frames: Sequence[np.ndarray], keys: Sequence[Hashable]) -> None:
    if len(frames) == 0:
        raise FrameError("no frames given")
    if len(frames) != len(keys):
        raise FrameError(f"{len(frames)} frames but {len(keys)} frame keys")
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
                or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
            desc = (f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray)
                    else type(frame).__name__)
            raise FrameError(f"frame {i} must be an RGB uint8 array [H, W, 3], got {desc}")


class Sam2Engine:
    """Encode frames (cached), seed SAM 2 with ``<SEG>`` tokens or clicks, propagate, track.

    ``sam2`` is a ``SAM2Base`` (e.g. ``PixelQwen2_5_VL.sam2``) in eval mode; it is read,
    never modified. ``dtype`` is the compute dtype (default: the module's): float16 /
    bfloat16 run under autocast, which also covers a module stored in that dtype.
    """

    def __init__(self, sam2: nn.Module, decoder: MaskDecoderBackend | None = None,
                 cache: FeatureCache | None = None, dtype: torch.dtype | None = None,
                 encode_batch: int = DEFAULT_ENCODE_BATCH):
        if not sam2.use_high_res_features_in_sam:
            raise EngineConfigError("SAM 2 model must use high-resolution features in its mask decoder "
                                    "(use_high_res_features_in_sam=True, as SAM 2.1 does)")
        if encode_batch < 1:
            raise EngineConfigError(f"encode_batch must be >= 1, got {encode_batch}")
        self.sam2 = sam2
        self.decoder = decoder if decoder is not None else TorchMaskDecoder(sam2)
        self.cache = cache if cache is not None else FeatureCache(DEFAULT_CACHE_FRAMES)
        self.dtype = dtype or next(sam2.parameters()).dtype
        self.encode_batch = encode_batch
        self.encode_count = 0  # frames run through the image encoder so far

    @property
    def image_size(self) -> int:
        return int(self.sam2.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.sam2.parameters()).device

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    # ------------------------------------------------------------------ image features

    @torch.inference_mode()
    def features(self, frames: Sequence[np.ndarray], keys: Sequence[Hashable]) -> list[FrameFeatures]:
        """Image features of ``frames``, encoding only those whose key is not cached."""
        _check_frames(frames, keys)
        found: dict[Hashable, FrameFeatures] = {}
        missing: dict[Hashable, np.ndarray] = {}
        for frame, key in zip(frames, keys):
            if key in found or key in missing:
                continue
            cached = self.cache.get(key)
            if cached is None:
                missing[key] = frame
            else:
                found[key] = cached
        todo = list(missing.items())
        for start in range(0, len(todo), self.encode_batch):
            chunk = todo[start:start + self.encode_batch]
            for (key, _), feats in zip(chunk, self._encode([frame for _, frame in chunk])):
                self.cache.put(key, feats)
                found[key] = feats
        return [found[key] for key in keys]

    def _encode(self, frames: list[np.ndarray]) -> list[FrameFeatures]:
        device = self.device
        # Resized on the model's device: the frames travel as uint8, the 4x larger floats do not.
        batch = torch.cat([sam_preprocess(torch.from_numpy(np.ascontiguousarray(f)).to(device), self.image_size)
                           for f in frames])
        with self._autocast():
            out = self.sam2.forward_image(batch.to(next(self.sam2.parameters()).dtype))
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        self.encode_count += len(frames)

        def own(t: torch.Tensor, i: int) -> torch.Tensor:
            # Stored in the compute dtype (autocast leaves some outputs in float32), each
            # frame in its own storage so that evicting one frame frees its memory.
            return t[i:i + 1].to(self.dtype, copy=True)

        return [FrameFeatures(image_embed=own(fpn[-1], i), image_pos=own(pos[-1], i),
                              feat_s0=own(fpn[-3], i), feat_s1=own(fpn[-2], i))
                for i in range(len(frames))]

    # ------------------------------------------------------------------ public segmentation

    @torch.inference_mode()
    def segment_seg_tokens(self, frames: Sequence[np.ndarray], keys: Sequence[Hashable],
                           seg_tokens: torch.Tensor) -> ObjectSegmentation:
        """Segment the object of one ``<SEG>`` on every frame: seeded on frame 0, propagated forward.

        ``seg_tokens``: [S, C] or [1, S, C], the seg head's output for one ``<SEG>``.
        """
        if seg_tokens.dim() == 2:
            seg_tokens = seg_tokens.unsqueeze(0)
        if seg_tokens.dim() != 3 or seg_tokens.shape[0] != 1 \
                or seg_tokens.shape[2] != self.sam2.sam_prompt_embed_dim:
            raise SegTokenError(f"<SEG> tokens of one object must be [S, {self.sam2.sam_prompt_embed_dim}], "
                                f"got shape {tuple(seg_tokens.shape)}")
        return self.segment_seg_tokens_many(frames, keys, seg_tokens)[0]

    @torch.inference_mode()
    def segment_seg_tokens_many(self, frames: Sequence[np.ndarray], keys: Sequence[Hashable],
                                seg_tokens: torch.Tensor) -> list[ObjectSegmentation]:
        """Segment the objects of several ``<SEG>`` (one answer) together: one SAM 2 step per frame.

        ``seg_tokens``: [K, S, C]. Result ``k`` is what :meth:`segment_seg_tokens` gives
        for ``seg_tokens[k]`` alone; K = 0 gives no objects.
        """
        if seg_tokens.dim() != 3 or seg_tokens.shape[2] != self.sam2.sam_prompt_embed_dim:
            raise SegTokenError(f"<SEG> tokens of K objects must be [K, S, {self.sam2.sam_prompt_embed_dim}], "
                                f"got shape {tuple(seg_tokens.shape)}")
        if seg_tokens.shape[0] == 0:
            return []
        feats = self.features(frames, keys)
        with self._autocast():
            sparse = seed_prompt(self.sam2, seg_tokens.to(self.device))
            multimask = self.sam2._use_multimask(True, None)
            return self._segment_window(frames, feats, 0, sparse, multimask)

    @torch.inference_mode()
    def segment_prompt(self, frames: Sequence[np.ndarray], keys: Sequence[Hashable], frame_index: int,
                       points: Sequence[tuple[float, float]] = (), labels: Sequence[int] = (),
                       box: tuple[float, float, float, float] | None = None) -> ObjectSegmentation:
        """Segment a clicked object on every frame: SAM 2's point/box prompt on ``frame_index``.

        Coordinates are pixels of that frame (x right, y down); ``labels`` are 1 (object)
        or 0 (background) per point; ``box`` is (x0, y0, x1, y1). Propagates forward to
        the last frame, then backward to the first.
        """
        _check_frames(frames, keys)
        if not 0 <= frame_index < len(frames):
            raise ClickError(f"frame_index {frame_index} is outside the {len(frames)} frames")
        height, width = frames[frame_index].shape[:2]
        coords, point_labels = self._click_inputs(points, labels, box, width, height)
        feats = self.features(frames, keys)
        with self._autocast():
            sparse, multimask = self._click_prompt(coords, point_labels)
            return self._segment_window(frames, feats, frame_index, sparse, multimask)[0]

    def click_prompt(self, width: int, height: int, points: Sequence[tuple[float, float]] = (),
                     labels: Sequence[int] = (),
                     box: tuple[float, float, float, float] | None = None) -> tuple[torch.Tensor, bool]:
        """SAM 2's sparse prompt [1, P, C] for a click or box on a ``width`` x ``height`` frame, and
        whether SAM 2 decodes three masks for it: what :meth:`segment_prompt` seeds with.

        Not under inference mode, so training can run the same prompt encoding with gradients.
        """
        coords, point_labels = self._click_inputs(points, labels, box, width, height)
        return self._click_prompt(coords, point_labels)

    def _click_prompt(self, coords: torch.Tensor, point_labels: torch.Tensor) -> tuple[torch.Tensor, bool]:
        sparse, _ = self.sam2.sam_prompt_encoder(points=(coords, point_labels), boxes=None, masks=None)
        multimask = self.sam2._use_multimask(True, {"point_coords": coords, "point_labels": point_labels})
        return sparse, multimask

    @torch.inference_mode()
    def segment_mask(self, frames: Sequence[np.ndarray], keys: Sequence[Hashable], frame_index: int,
                     mask: np.ndarray) -> ObjectSegmentation:
        """Segment an object drawn as a mask (H x W, True = object) on ``frame_index`` on every frame.

        As SAM 2's video predictor takes a mask: resized to the SAM frame (bilinear,
        antialiased, >= 0.5), used as that frame's mask logits (+-10) without a decoder
        pass, its object pointer decoded from the downsampled mask, then encoded into
        memory and propagated forward to the last frame and backward to the first. The
        seed frame's mask in the result is the given mask itself.
        """
        _check_frames(frames, keys)
        if not 0 <= frame_index < len(frames):
            raise ClickError(f"frame_index {frame_index} is outside the {len(frames)} frames")
        given = np.asarray(mask, dtype=bool)
        if given.shape != frames[frame_index].shape[:2]:
            raise ClickError(f"mask of shape {given.shape} does not match the frame's {frames[frame_index].shape[:2]}")
        if not given.any():
            raise ClickError("the mask is empty")
        if not self.sam2.use_mask_input_as_output_without_sam:
            raise EngineConfigError("mask prompts need a SAM 2 model that uses mask inputs as outputs "
                                    "(use_mask_input_as_output_without_sam=True, as SAM 2.1 does)")
        feats = self.features(frames, keys)
        with self._autocast():
            segmentation = self._segment_window(frames, feats, frame_index, mask_inputs=self._mask_input(given))[0]
        seed = segmentation.frames[frame_index]
        segmentation.frames[frame_index] = FrameMask(mask=given.copy(), score=seed.score,
                                                     object_score=seed.object_score,
                                                     low_res_logits=seed.low_res_logits)
        return segmentation

    @torch.inference_mode()
    def track(self, state: TrackState, frame: np.ndarray, key: Hashable) -> FrameMask:
        """Step one object onto the next camera frame (frame index ``state.last_index + 1``).

        ``frame`` must be newer than every frame the state has seen. An object SAM 2
        reports as absent is returned not visible (empty mask); its state keeps
        tracking, so it is found again when it reappears.
        """
        return self.track_many([state], frame, key)[0]

    @torch.inference_mode()
    def track_many(self, states: Sequence[TrackState], frame: np.ndarray, key: Hashable) -> list[FrameMask]:
        """Step every object of one camera onto its newest frame: one SAM 2 step for all of them.

        Each state moves to its own next index (``last_index + 1``: objects kept at
        different times count frames differently). Results are in the order of
        ``states``, each what :meth:`track` gives for that state alone.
        """
        states = list(states)
        for i, state in enumerate(states):
            if not state.cond:
                raise TrackError(f"tracking state {i} has no prompted frame to track from")
        if len({id(state) for state in states}) != len(states):
            raise TrackError("a tracking state is given twice; each is stepped once per frame")
        if not states:
            return []
        feats = self.features([frame], [key])[0]
        indices = [state.last_index + 1 for state in states]
        # A live stream is a long video: SAM 2's pointer window is full, never cut by a length.
        horizons = [max(index + 1, int(self.sam2.max_obj_ptrs_in_encoder)) for index in indices]
        with self._autocast():
            sparse = padding_prompt(self.sam2, len(states))
            multimask = self.sam2._use_multimask(False, None)
            decoded = self._step(states, feats, indices, sparse, multimask, cond=False,
                                 horizons=horizons, reverse=False)
        for state, index in zip(states, indices):
            state.last_index = index
            self._prune(state)
        return self._frame_masks(decoded, frame)

    # ------------------------------------------------------------------ internals

    def _click_inputs(self, points: Sequence[tuple[float, float]], labels: Sequence[int],
                      box: tuple[float, float, float, float] | None, width: int,
                      height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-pixel clicks -> SAM-frame point coords [1, N, 2] and labels [1, N] (box first)."""
        if len(points) != len(labels):
            raise ClickError(f"{len(points)} points but {len(labels)} labels")
        if not points and box is None:
            raise ClickError("a click needs at least one point or a box")
        if any(label not in (NEGATIVE, POSITIVE) for label in labels):
            raise ClickError(f"point labels must be {POSITIVE} (object) or {NEGATIVE} (background), "
                             f"got {list(labels)}")
        corners: list[tuple[float, float]] = []
        corner_labels: list[int] = []
        if box is not None:
            if len(box) != 4:
                raise ClickError(f"a box is (x0, y0, x1, y1), got {box}")
            x0, y0, x1, y1 = box
            if x1 < x0 or y1 < y0:
                raise ClickError(f"box corners must be top-left then bottom-right, got {box}")
            corners, corner_labels = [(x0, y0), (x1, y1)], [BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]
        all_points = [*corners, *points]
        if not np.isfinite(np.asarray(all_points, dtype=np.float64)).all():
            raise ClickError(f"click coordinates must be finite, got {all_points}")
        # SAM 2's video predictor scales boxes like points (float), unlike UniPixel's <REF> boxes.
        sam_points = np.stack([point_to_sam(x, y, width, height, self.image_size) for x, y in all_points])
        coords = torch.from_numpy(sam_points).to(self.device)[None]
        point_labels = torch.tensor([[*corner_labels, *labels]], dtype=torch.int32, device=self.device)
        return coords, point_labels

    def _segment_window(self, frames: Sequence[np.ndarray], feats: list[FrameFeatures], seed: int,
                        sparse: torch.Tensor | None = None, multimask: bool = False,
                        mask_inputs: torch.Tensor | None = None) -> list[ObjectSegmentation]:
        """Seed K objects on frame ``seed`` with ``sparse`` [K, P, C] (or one object with
        ``mask_inputs``, a mask on the SAM frame), then propagate them together forward and backward."""
        count = 1 if mask_inputs is not None else int(sparse.shape[0])
        states = [TrackState(cond={}) for _ in range(count)]
        horizon = len(frames)
        horizons = [horizon] * count
        if mask_inputs is not None:
            first = self._mask_step(states[0], feats[seed], seed, mask_inputs)
        else:
            first = self._step(states, feats[seed], [seed] * count, sparse, multimask, cond=True,
                               horizons=horizons, reverse=False)
        decoded: dict[int, _Decoded] = {seed: first}
        track_sparse = padding_prompt(self.sam2, count)
        track_multimask = self.sam2._use_multimask(False, None)
        for reverse, order in ((False, range(seed + 1, horizon)), (True, range(seed - 1, -1, -1))):
            for t in order:
                decoded[t] = self._step(states, feats[t], [t] * count, track_sparse, track_multimask, cond=False,
                                        horizons=horizons, reverse=reverse)
        for state in states:
            state.last_index = horizon - 1
            self._prune(state)
        per_frame = [self._frame_masks(decoded[t], frames[t]) for t in range(horizon)]
        return [ObjectSegmentation([per_frame[t][k] for t in range(horizon)], state)
                for k, state in enumerate(states)]

    def _step(self, states: Sequence[TrackState], feats: FrameFeatures, indices: Sequence[int],
              sparse: torch.Tensor, multimask: bool, *, cond: bool, horizons: Sequence[int],
              reverse: bool) -> _Decoded:
        """One frame of SAM 2 for K objects: memory attention, mask decoder, memory encoder."""
        pix_feat = self._condition(states, feats, indices, cond, horizons, reverse)
        decoded = self._decode(pix_feat, feats, sparse, multimask)
        self._remember(states, feats, indices, decoded, cond)
        return decoded

    def _condition(self, states: Sequence[TrackState], feats: FrameFeatures, indices: Sequence[int], cond: bool,
                   horizons: Sequence[int], reverse: bool) -> torch.Tensor:
        """The frame's features conditioned on each object's memory: [K, C, h, w].

        One object: SAM 2's own ``_prepare_memory_conditioned_features``. Several: SAM 2's
        same code selects and embeds each object's memory (``_MemorySelection``), and the
        objects whose memories have one layout (number of memory tokens, and of object-pointer
        tokens among them) share one memory-attention call.

        Grouped rather than padded to one length: SAM 2's memory attention (RoPE
        cross-attention through ``scaled_dot_product_attention``) takes no attention mask,
        so padding tokens would be attended to and change every object's result, and it
        takes one pointer-token count per call. Layouts differ only while an object warms
        up (fewer earlier frames than ``num_maskmem - 1`` memories or
        ``max_obj_ptrs_in_encoder - 1`` pointers): a few frames after it was kept, each
        object joins the steady layout, so a camera's steady objects take one call. The
        objects' pointer distances to their prompted frames differ (kept at different
        times), which is why SAM 2's own batched call, with one set of pointer positions
        for the whole batch, cannot take them together.

        Measured (``bench/bench_tracking_batch.py``, one CPU thread, fp32): on the tiny
        SAM 2.1 a batched step for 5 objects costs 0.67-0.74 of five per-object steps, for
        10 objects 0.85. At hiera-b+ 768 px it does not pay on a CPU (1.13 for 5, 1.29 for
        10): memory attention is 95 % of a step there, its cross-attention over each
        object's ~16k memory tokens is arithmetic of that object alone, and a batch only
        adds working set (its tensors, hundreds of MB, come from fresh pages on every call:
        ~0.2 s of page faults per object and step). The gain batching is for is fewer,
        larger kernels where per-call cost counts (a GPU).
        """
        sam = self.sam2
        vision = feats.image_embed.flatten(2).permute(2, 0, 1)  # (HW) x 1 x C, as SAM 2 keeps it
        vision_pos = feats.image_pos.flatten(2).permute(2, 0, 1)
        height, width = feats.image_embed.shape[-2:]

        def prepare(model: Any, state: TrackState, index: int, horizon: int) -> torch.Tensor:
            return type(sam)._prepare_memory_conditioned_features(
                model, frame_idx=index, is_init_cond_frame=cond, current_vision_feats=[vision],
                current_vision_pos_embeds=[vision_pos], feat_sizes=[(height, width)],
                output_dict=state.output_dict(), num_frames=horizon, track_in_reverse=reverse)

        if len(states) == 1:
            return prepare(sam, states[0], indices[0], horizons[0])
        conditioned: list[torch.Tensor | None] = [None] * len(states)
        groups: dict[tuple[int, int], list[tuple[int, _MemoryInputs]]] = {}
        for k, (state, index, horizon) in enumerate(zip(states, indices, horizons)):
            recorder = _MemoryRecorder()
            direct = prepare(_MemorySelection(sam, recorder), state, index, horizon)
            if recorder.inputs is None:          # no memory to attend to (an initial conditioning frame)
                conditioned[k] = direct
            else:
                groups.setdefault(recorder.inputs.layout, []).append((k, recorder.inputs))
        for (_, pointer_tokens), members in groups.items():
            count = len(members)
            attended = sam.memory_attention(
                curr=[_batch_major(vision[:, 0], count)], curr_pos=[_batch_major(vision_pos[:, 0], count)],
                memory=_batch_major([m.memory[:, 0] for _, m in members]),
                memory_pos=_batch_major([m.memory_pos[:, 0] for _, m in members]),
                num_obj_ptr_tokens=pointer_tokens)
            attended = attended.permute(1, 2, 0).reshape(count, -1, height, width)
            for j, (k, _) in enumerate(members):
                conditioned[k] = attended[j:j + 1]
        return torch.cat(conditioned)

    def _mask_input(self, mask: np.ndarray) -> torch.Tensor:
        """H x W bool mask -> [1, 1, S, S] float 0/1 on the SAM frame, as SAM 2's video predictor resizes it."""
        m = torch.from_numpy(np.ascontiguousarray(mask)).to(self.device, torch.float32)[None, None]
        if tuple(m.shape[-2:]) == (self.image_size, self.image_size):
            return m
        resized = F.interpolate(m, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                                antialias=True)
        return (resized >= 0.5).float()

    def _mask_step(self, state: TrackState, feats: FrameFeatures, index: int, mask_inputs: torch.Tensor) -> _Decoded:
        """The seed frame of a mask prompt: SAM 2's mask-as-output on the frame's own features
        (no memory attention: it is an initial conditioning frame), then the memory encoder."""
        low_res, _, iou, _, _, obj_ptr, object_score = self.sam2._use_mask_as_output(
            feats.image_embed, [feats.feat_s0, feats.feat_s1], mask_inputs)
        decoded = _Decoded(masks=low_res.float(), iou=iou, obj_ptr=obj_ptr, object_score=object_score)
        self._remember([state], feats, [index], decoded, cond=True)
        return decoded

    def _remember(self, states: Sequence[TrackState], feats: FrameFeatures, indices: Sequence[int],
                  decoded: _Decoded, cond: bool) -> None:
        """Encode K decoded objects into their memories (``state.cond`` for a prompted frame)."""
        sam = self.sam2
        vision = feats.image_embed.flatten(2).permute(2, 0, 1)
        sizes = [tuple(feats.image_embed.shape[-2:])]
        high_res = upsample_mask_logits(decoded.masks, self.image_size, self.image_size)
        # A SAM 2 that makes the masks of one batch non-overlapping would tie the objects together.
        chunk = 1 if sam.non_overlap_masks_for_mem_enc else len(states)
        for start in range(0, len(states), chunk):
            part = slice(start, start + chunk)
            count = len(states[part])
            # Prompted frames count as "mask from points" exactly as SAM 2's video predictor encodes them.
            maskmem, maskmem_pos = sam._encode_new_memory(
                current_vision_feats=[vision.expand(-1, count, -1)], feat_sizes=sizes,
                pred_masks_high_res=high_res[part], object_score_logits=decoded.object_score[part],
                is_mask_from_pts=cond)
            maskmem = maskmem.to(feats.image_embed.dtype)
            pos = [_own(p, 0) for p in maskmem_pos]      # depends on the shape only: one copy for all
            for j, (state, index) in enumerate(zip(states[part], indices[part])):
                entry = {"maskmem_features": _own(maskmem, j), "maskmem_pos_enc": self._shared_pos(state, pos),
                         "obj_ptr": _own(decoded.obj_ptr, start + j)}
                (state.cond if cond else state.recent)[index] = entry

    @staticmethod
    def _shared_pos(state: TrackState, pos: list[torch.Tensor]) -> list[torch.Tensor]:
        """The memory positional encoding depends only on the shape: keep one copy per state."""
        for entry in (*state.cond.values(), *state.recent.values()):
            return entry["maskmem_pos_enc"]
        return pos

    def _decode(self, pix_feat: torch.Tensor, feats: FrameFeatures, sparse: torch.Tensor,
                multimask: bool) -> _Decoded:
        if multimask:
            out = self.decoder(DecoderInputs(image_embed=pix_feat, feat_s0=feats.feat_s0,
                                             feat_s1=feats.feat_s1, sparse=sparse))
        else:
            out = self._decode_single(pix_feat, feats, sparse)
        return _Decoded(masks=out.masks.float(), iou=out.iou,
                        obj_ptr=self._object_pointer(out.tokens, out.object_score),
                        object_score=out.object_score)

    def _decode_single(self, pix_feat: torch.Tensor, feats: FrameFeatures,
                       sparse: torch.Tensor) -> DecoderOutputs:
        """SAM 2's torch decoder with single-mask output (box or several clicks)."""
        sam = self.sam2
        encoder = sam.sam_prompt_encoder
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            pix_feat.shape[0], -1, *pix_feat.shape[-2:])
        masks, iou, tokens, object_score = sam.sam_mask_decoder(
            image_embeddings=pix_feat, image_pe=encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=False, repeat_image=False,
            high_res_features=[feats.feat_s0, feats.feat_s1])
        if sam.pred_obj_scores:
            masks = torch.where(object_score[:, :, None, None] > 0, masks, NO_OBJ_SCORE)
        return DecoderOutputs(masks=masks.float(), iou=iou, tokens=tokens[:, 0], object_score=object_score)

    def _object_pointer(self, token: torch.Tensor, object_score: torch.Tensor) -> torch.Tensor:
        return object_pointer(self.sam2, token, object_score)

    def _prune(self, state: TrackState) -> None:
        """Drop what SAM 2 can no longer read when tracking forward from ``state.last_index``.

        The next frame reads spatial memory of the last ``num_maskmem - 1`` frames (every
        ``stride``-th beyond the newest) and object pointers of the last
        ``max_obj_ptrs_in_encoder - 1`` frames.
        """
        sam = self.sam2
        newest = state.last_index
        oldest_ptr = newest + 2 - int(sam.max_obj_ptrs_in_encoder) if sam.use_obj_ptrs_in_encoder else newest + 1
        oldest_mem = newest - int(sam.memory_temporal_stride_for_eval) * max(int(sam.num_maskmem) - 2, 0)
        for t in list(state.recent):
            if t < min(oldest_ptr, oldest_mem):
                del state.recent[t]
            elif t < oldest_mem and "maskmem_features" in state.recent[t]:
                state.recent[t] = {"obj_ptr": state.recent[t]["obj_ptr"]}

    def _frame_masks(self, decoded: _Decoded, frame: np.ndarray) -> list[FrameMask]:
        """The K decoded objects at the frame's resolution."""
        height, width = frame.shape[:2]
        count = int(decoded.masks.shape[0])
        masks = logits_to_masks(decoded.masks[:, 0], height, width).cpu().numpy()
        ious = decoded.iou.float().reshape(count).tolist()
        scores = decoded.object_score.float().reshape(count).tolist()
        return [FrameMask(mask=masks[k] if count == 1 else masks[k].copy(), score=ious[k], object_score=scores[k],
                          low_res_logits=_own(decoded.masks, k)[0, 0])
                for k in range(count)]
