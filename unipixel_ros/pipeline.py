"""UniPixel requests end to end, without ROS: frames + text + prompts -> answer + masks.

How a request runs (the published model's inference protocol):

* Text only: one greedy generation over up to 16 sampled frames; every ``<|seg|>`` the
  model writes becomes two SAM prompt tokens that seed SAM 2 on frame 0 of the window,
  and SAM 2 propagates that object through ALL frames of the window.
* With point / box prompts (PixelQA): pass 1 ("pre-fill") encodes each prompt into its
  ``[k] <|ref|>`` token and scores the known answer ``"[0] <|seg|> [1] <|seg|>"`` after
  the question (ended with a sentence mark, as the authors' inference does), whose
  ``<|seg|>`` positions segment the prompted objects; pass 2 ("injection") asks the
  question after a prefix that names every object's frames with one ``<|mem|>`` each,
  filled with the object's pooled vision features. The prefix counts the N frames
  sampled for the language model (not the padded even count).
* Mask prompts and objects already in memory skip pass 1: their masks are injected as
  given (a drawn mask on its own frame only, as the authors' mask-prompt inference
  does). A mask-prompted object is returned and kept like a point/box one: SAM 2 takes
  the mask as a prompt on its frame and propagates it through the window (the mask
  itself is the object's mask on that frame).

A request is bounded by :class:`unipixel_ros.prompts.RequestLimits` (prompts, text
tokens counted by the model's tokenizer, mask pixels), checked before any model work.
One request runs at a time (a lock around every model call); nothing about a request is
left on the modules. Per-frame SAM 2 features are cached by the engine (a bounded LRU
of frames), so a second request on the same frames does not encode them again.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from unipixel_ros.geometry import box_to_sam, point_to_sam
from unipixel_ros.memory import ObjectMemoryBank, memory_question
from unipixel_ros.model.chat import chat_text, decode_response, encode_request
from unipixel_ros.model.inputs import ReferenceInput
from unipixel_ros.model.sam2_engine import ObjectSegmentation, Sam2Engine
from unipixel_ros.prompts import (DEFAULT_LIMITS, REF_TOKEN, SEG_TOKEN, BoxPrompt, MaskPrompt, MemoryPrompt,
                                  PointPrompt, PromptError, RequestLimits, VisualPrompt, compose_question,
                                  localize_objects_question_at_inference, order_ref_prompts, referenced_objects,
                                  segmentation_answer, validate_request)
from unipixel_ros.regions import region_token_masks
from unipixel_ros.results import (ProgressCallback, QueryCancelled, QueryResult, SegmentedObject, TrackedMask)
from unipixel_ros.sampling import MAX_SAMPLED_FRAMES, FramePlan, plan_frames, select_frames

LOG = logging.getLogger(__name__)

# The tiny model built in code (random weights: noise masks), for tests of the plumbing.
TINY_MODEL = "tiny"
# The offline default: a small UniPixel trained on synthetic scenes, shipped in the package.
SYNTHETIC_MODEL = "synthetic"
SYNTHETIC_MODEL_DIR = Path(__file__).parent / "data" / "unipixel-synthetic"


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> None:
    """Give the heap that a request freed back to the system.

    A request allocates and frees hundreds of MiB (resized frames, masks, activations);
    glibc keeps freed blocks in its arenas, so without this the process grows request
    after request although nothing of a request is kept.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _Stopwatch:
    """Per-stage wall times of one request."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def frame_key(frame: np.ndarray, stamp: int) -> tuple[int, int, int, int]:
    """Cache key of a frame: its stamp plus a cheap fingerprint of its pixels, so two
    cameras' frames with equal stamps never share SAM 2 features."""
    sample = np.ascontiguousarray(frame[::17, ::13])
    return int(stamp), frame.shape[0], frame.shape[1], zlib.crc32(sample.tobytes())


def _check_frames(frames: Sequence[np.ndarray], stamps: Sequence[int]) -> list[np.ndarray]:
    if len(frames) == 0:
        raise PromptError("no frames: the camera window is empty")
    if len(frames) != len(stamps):
        raise PromptError(f"{len(frames)} frames but {len(stamps)} stamps")
    arrays = [np.asarray(f) for f in frames]
    for i, frame in enumerate(arrays):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise PromptError(f"frame {i} must be RGB uint8 H x W x 3, got {frame.dtype} {frame.shape}")
        if frame.shape != arrays[0].shape:
            raise PromptError(f"frames differ in size: frame 0 is {arrays[0].shape[1]}x{arrays[0].shape[0]}, "
                              f"frame {i} is {frame.shape[1]}x{frame.shape[0]}")
    return arrays


# How an answer names the object a ``<|seg|>`` produced: its 1-based place in the result's
# ``objects`` (the response's ``objects`` array), whether or not it was remembered.
OBJECT_NAME = "[obj {}]"


def name_objects(text: str, first: int = 0) -> str:
    """The answer as people read it: the n-th ``<|seg|>`` becomes the name of ``objects[first + n]``
    (:data:`OBJECT_NAME`, counted from 1), spacing tidied. ``first`` is the number of objects
    listed before the answer's own (those a request's prompts produced)."""
    head, *rest = text.split(SEG_TOKEN)
    named = head + "".join(f" {OBJECT_NAME.format(first + n + 1)}{part}" for n, part in enumerate(rest))
    return " ".join(named.split())


class UniPixelPipeline:
    """The ROS-free API the node calls (see :class:`unipixel_ros.results.QueryPipeline`)."""

    def __init__(self, model, processor, engine: Sam2Engine | None = None, *,
                 max_llm_frames: int = MAX_SAMPLED_FRAMES, max_new_tokens: int = 256,
                 decode: str = "eager") -> None:
        self.model = model
        self.decode = decode  # generate_greedy's decode: eager, static or compiled
        self.processor = processor
        self.engine = engine if engine is not None else Sam2Engine(model.sam2)
        self.max_llm_frames = max_llm_frames
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ query

    def query(self, frames: Sequence[np.ndarray], stamps: Sequence[int], text: str,
              prompts: Sequence[VisualPrompt] = (), memory: ObjectMemoryBank | None = None,
              progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
              remember: bool = False, limits: RequestLimits = DEFAULT_LIMITS) -> QueryResult:
        """Answer ``text`` about ``frames`` (RGB uint8, oldest first; stamps in ns).

        ``memory`` resolves :class:`MemoryPrompt` objects and, with ``remember``, receives
        every segmented object (with its SAM 2 tracking state) under a new id.
        Raises :class:`PromptError` on a request the model cannot take (including one
        beyond ``limits``) and :class:`QueryCancelled` when ``cancel`` is set.
        """
        try:
            return self._query(frames, stamps, text, prompts, memory, progress, cancel, remember, limits)
        finally:
            release_freed_memory()

    def _query(self, frames: Sequence[np.ndarray], stamps: Sequence[int], text: str, prompts: Sequence[VisualPrompt],
               memory: ObjectMemoryBank | None, progress: ProgressCallback | None, cancel: threading.Event | None,
               remember: bool, limits: RequestLimits) -> QueryResult:
        clock = _Stopwatch()
        with clock.stage("prepare"):
            limits.check_prompt_count(len(prompts))
            frames = _check_frames(frames, stamps)
            height, width = frames[0].shape[:2]
            validate_request(text, prompts, len(frames), width, height, limits)
            limits.check_text_tokens(self.count_tokens(text))
            given_masks = self._given_masks(prompts, stamps, memory, height, width)
            keys = [frame_key(f, s) for f, s in zip(frames, stamps)]
            keep = [p.frame_index for p in prompts if not isinstance(p, MemoryPrompt)]
            plan = plan_frames(len(frames), height, width, max_frames=self.max_llm_frames, keep=keep)
            llm_frames = select_frames(frames, plan)

        def step(stage: str, tokens: int = 0, partial: str = "") -> None:
            if cancel is not None and cancel.is_set():
                raise QueryCancelled("the query was cancelled")
            if progress is not None:
                progress(stage, tokens, partial)

        with self._lock:
            objects: list[SegmentedObject] = []
            if prompts:
                question = compose_question(text, prompts)
                step("segment_prompted")
                with clock.stage("segment_prompted"):
                    objects = self._segment_prompted(question, prompts, frames, keys, plan, llm_frames)
                # A drawn mask is injected as drawn (its frame only), not as SAM 2 propagated it.
                masks = {o.object_index: o.masks for o in objects} | given_masks
                order = [k for k in referenced_objects(question) if k in masks]
                # The prefix and the regions speak of the N sampled frames; the regions pad an odd N.
                sampled = np.stack([np.stack([masks[k][i] for k in order]) for i in plan.indices])
                del masks, given_masks
                user_text = memory_question(_strip_ref_tokens(question), order, sampled)
                region_masks = region_token_masks(sampled, plan.grid_thw)
                del sampled
            else:
                user_text, region_masks = text.strip(), None

            step("prefill")
            with clock.stage("prepare"):
                inputs = encode_request(self.processor, chat_text(user_text), llm_frames, region_masks=region_masks)
            answer_ids, seg_tokens = self._generate(inputs, clock, step)
            answer = decode_response(self.processor, answer_ids)

            step("segment", len(answer_ids), answer)
            prompted = len(objects)
            with clock.stage("segment"):
                # The answer's objects propagate together: one SAM 2 step per frame for all of them.
                for i, segmentation in enumerate(self.engine.segment_seg_tokens_many(frames, keys, seg_tokens)):
                    objects.append(self._to_object(segmentation, label=_seg_label(text, i, len(seg_tokens))))

        if remember and memory is not None:
            with clock.stage("remember"):
                for obj in objects:
                    obj.memory_id = memory.add(obj.label, zip(stamps, obj.masks, obj.scores.tolist()))
                    memory.attach_tracking(obj.memory_id, obj.tracking)
        return QueryResult(answer=name_objects(answer, first=prompted), objects=objects,
                           timings=clock.timings)

    def _given_masks(self, prompts: Sequence[VisualPrompt], stamps: Sequence[int],
                     memory: ObjectMemoryBank | None, height: int, width: int) -> dict[int, np.ndarray]:
        """Per object ``[k]`` with a drawn mask or a memory object: its masks on every window frame."""
        masks: dict[int, np.ndarray] = {}
        for prompt in prompts:
            if isinstance(prompt, MaskPrompt):
                stack = np.zeros((len(stamps), height, width), bool)
                stack[prompt.frame_index] = np.asarray(prompt.mask, bool)
                masks[prompt.object_index] = stack
            elif isinstance(prompt, MemoryPrompt):
                if memory is None or prompt.memory_id not in memory:
                    raise PromptError(f"prompt for [{prompt.object_index}]: no object {prompt.memory_id} in memory")
                record = memory.get(prompt.memory_id)
                by_stamp = dict(zip(record.stamps, record.masks))
                stack = np.zeros((len(stamps), height, width), bool)
                for i, stamp in enumerate(stamps):
                    if stamp in by_stamp and by_stamp[stamp].shape == (height, width):
                        stack[i] = by_stamp[stamp]
                if not stack.any():
                    raise PromptError(f"prompt for [{prompt.object_index}]: memory object {prompt.memory_id} "
                                      "has no mask on the frames of this window")
                masks[prompt.object_index] = stack
        return masks

    def count_tokens(self, text: str) -> int:
        """Tokens of the user's text as the model's tokenizer splits it."""
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _segment_prompted(self, question: str, prompts: Sequence[VisualPrompt], frames: list[np.ndarray],
                          keys: list, plan: FramePlan, llm_frames: list[np.ndarray]) -> list[SegmentedObject]:
        """The prompted objects on every frame, in order of first mention: point/box objects from
        pass 1's pre-filled ``[k] <|seg|>`` answer, mask objects from SAM 2 seeded with the mask."""
        found = {o.object_index: o for o in self._segment_referenced(question, prompts, frames, keys, plan,
                                                                     llm_frames)}
        for prompt in prompts:
            if isinstance(prompt, MaskPrompt):
                segmentation = self.engine.segment_mask(frames, keys, prompt.frame_index, prompt.mask)
                found[prompt.object_index] = self._to_object(segmentation, label=f"[{prompt.object_index}]",
                                                             object_index=prompt.object_index)
        return [found[k] for k in referenced_objects(question) if k in found]

    def _segment_referenced(self, question: str, prompts: Sequence[VisualPrompt], frames: list[np.ndarray],
                            keys: list, plan: FramePlan, llm_frames: list[np.ndarray]) -> list[SegmentedObject]:
        """Pass 1: the point/box-prompted objects' masks from the pre-filled ``[k] <|seg|>`` answer."""
        ordered = order_ref_prompts(question, prompts)
        if not ordered:
            return []
        height, width = frames[0].shape[:2]
        size = self.engine.image_size
        references = [self._reference(p, plan, width, height, size) for p in ordered]
        indices = [p.object_index for p in ordered]
        chat = chat_text(localize_objects_question_at_inference(question), response=segmentation_answer(indices))
        inputs = encode_request(self.processor, chat, llm_frames, references=references)
        seg_tokens = self.model.prompt_seg_tokens(inputs)
        del inputs
        segmentations = self.engine.segment_seg_tokens_many(frames, keys, seg_tokens)
        return [self._to_object(segmentation, label=f"[{k}]", object_index=k)
                for k, segmentation in zip(indices, segmentations)]

    @staticmethod
    def _reference(prompt: PointPrompt | BoxPrompt, plan: FramePlan, width: int, height: int,
                   size: int) -> ReferenceInput:
        position = plan.position_of(prompt.frame_index)
        if isinstance(prompt, PointPrompt):
            x, y = point_to_sam(prompt.x, prompt.y, width, height, size)
            return ReferenceInput.point(float(x), float(y), position)
        (x0, y0), (x1, y1) = box_to_sam(prompt.x0, prompt.y0, prompt.x1, prompt.y1, width, height, size)
        return ReferenceInput.box(int(x0), int(y0), int(x1), int(y1), position)

    def _generate(self, inputs, clock: _Stopwatch,
                  step: Callable[[str, int, str], None]) -> tuple[list[int], torch.Tensor]:
        """Greedy answer: token ids and one SAM prompt-token pair per ``<|seg|>`` it wrote."""
        generated: list[int] = []
        started = time.perf_counter()
        first_token_at: list[float] = []

        def on_token(token_id: int) -> bool:
            if not first_token_at:
                first_token_at.append(time.perf_counter())
            generated.append(token_id)
            step("decode", len(generated), decode_response(self.processor, generated))
            return True

        output = self.model.generate_greedy(inputs, max_new_tokens=self.max_new_tokens, on_token=on_token,
                                            decode=self.decode)
        finished = time.perf_counter()
        prefill_end = first_token_at[0] if first_token_at else finished
        clock.timings["prefill"] = prefill_end - started
        clock.timings["decode"] = finished - prefill_end
        return output.token_ids, output.seg_tokens[output.prompt_seg_count:]

    def _to_object(self, segmentation: ObjectSegmentation, label: str,
                   object_index: int | None = None) -> SegmentedObject:
        scores = np.array([f.score if f.visible else 0.0 for f in segmentation.frames], np.float32)
        return SegmentedObject(label=label, masks=segmentation.masks, scores=scores, object_index=object_index,
                               tracking=segmentation.state)

    # ------------------------------------------------------------------ clicks and tracking

    def segment_prompt(self, frames: Sequence[np.ndarray], stamps: Sequence[int],
                       prompt: VisualPrompt) -> SegmentedObject:
        """Segment one clicked point or box with SAM 2 alone, on every frame given."""
        frames = _check_frames(frames, stamps)
        height, width = frames[0].shape[:2]
        if not isinstance(prompt, (PointPrompt, BoxPrompt)):
            raise PromptError(f"click-to-segment takes a point or a box, got {type(prompt).__name__}")
        validate_request("", [prompt], len(frames), width, height)
        keys = [frame_key(f, s) for f, s in zip(frames, stamps)]
        with self._lock:
            if isinstance(prompt, PointPrompt):
                segmentation = self.engine.segment_prompt(frames, keys, prompt.frame_index,
                                                          points=[(prompt.x, prompt.y)], labels=[1])
            else:
                segmentation = self.engine.segment_prompt(frames, keys, prompt.frame_index,
                                                          box=(prompt.x0, prompt.y0, prompt.x1, prompt.y1))
        return self._to_object(segmentation, label="click", object_index=prompt.object_index)

    def track(self, memory: ObjectMemoryBank, frame: np.ndarray, stamp: int) -> dict[int, TrackedMask]:
        """Step every tracked object of ``memory`` onto a newer frame and record its mask there.

        Only objects whose newest mask is older than ``stamp`` are stepped (SAM 2 takes each
        object's frames in time order): one that already holds this frame or a later one,
        such as an object just clicked on the newest frame while others catch up to it, is
        left out of the result.
        """
        frame = _check_frames([frame], [stamp])[0]
        key = frame_key(frame, stamp)
        with self._lock:
            states = memory.tracked_before(int(stamp))
            # One SAM 2 step for all of the camera's objects (each keeps its own memory).
            steps = self.engine.track_many(list(states.values()), frame, key)
            results = {object_id: TrackedMask(mask=step.mask, score=float(step.score), visible=step.visible)
                       for object_id, step in zip(states, steps)}
        for object_id, tracked in results.items():
            if object_id in memory:
                memory.add_frame(object_id, int(stamp), tracked.mask, tracked.score if tracked.visible else 0.0)
        return results


def _strip_ref_tokens(question: str) -> str:
    """Pass 2 names objects by ``[k]`` only: their prompts are in the memory prefix now."""
    return question.replace(f" {REF_TOKEN}", "")


def _seg_label(text: str, index: int, count: int) -> str:
    label = " ".join(text.split())[:80]
    return label if count == 1 else f"{label} #{index + 1}"


def default_decoder_dir(model_id: str) -> Path:
    """Per-model cache folder for the exported mask decoder (ONNX file, TensorRT engine)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_id).strip("/")) or TINY_MODEL
    return cache / "unipixel_ros" / "decoders" / name


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def model_source(model_id: str) -> str:
    """What the loader reads for ``model_id``: the shipped folder for ``"synthetic"``, else the id."""
    return str(SYNTHETIC_MODEL_DIR) if model_id == SYNTHETIC_MODEL else model_id


def build_pipeline(model_id: str = SYNTHETIC_MODEL, device: str = "auto", dtype: str = "auto",
                   decoder_backend: str = "torch", decoder_dir: str | Path | None = None,
                   decoder_precision: str = "fp32", rebuild_decoder: bool = False,
                   max_new_tokens: int = 256, compile: bool = False,
                   log: Callable[[str], None] = LOG.warning) -> UniPixelPipeline:
    """The pipeline for a checkpoint (local folder or Hugging Face id), ``"synthetic"`` (the
    shipped model trained on synthetic scenes) or ``"tiny"`` (untrained, built in code).

    ``dtype`` ``auto`` is bf16 on a GPU and fp32 on the CPU. ``decoder_backend`` is
    torch, onnxruntime or tensorrt; a backend that cannot run falls back to torch with
    the reason passed to ``log``. ``compile`` decodes over a static KV cache with a
    torch.compile'd step (see ``generate_greedy``).
    """
    from unipixel_ros.decoders.factory import ArtifactPaths, create_decoder_backend

    device = resolve_device(device)
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    if model_id == SYNTHETIC_MODEL:
        log("model: the synthetic UniPixel shipped with the package: trained on coloured shapes over textures only "
            "(see its MODEL_CARD.md). Set model to PolyU-ChenLab/UniPixel-3B (or a local checkpoint) for real scenes.")
    if model_id == TINY_MODEL:
        from unipixel_ros.model.tiny import build_tiny_unipixel

        log("model: the tiny built-in UniPixel with untrained weights; its answers and masks are noise. "
            "Set model to PolyU-ChenLab/UniPixel-3B (or a local checkpoint) for real results.")
        model, processor = build_tiny_unipixel()
        from unipixel_ros.model.loader import resolve_dtype

        model.to(device=device, dtype=resolve_dtype(dtype))
    else:
        from unipixel_ros.model.loader import load_unipixel

        model, processor = load_unipixel(model_source(model_id), device=device, dtype=dtype)
    if decoder_dir is None:
        decoder_dir = default_decoder_dir(model_id)
    artifacts = ArtifactPaths.in_directory(decoder_dir, decoder_precision)
    choice = create_decoder_backend(decoder_backend, model.sam2, artifacts, precision=decoder_precision,
                                    rebuild=rebuild_decoder, log=log)
    engine = Sam2Engine(model.sam2, decoder=choice.backend)
    return UniPixelPipeline(model, processor, engine, max_new_tokens=max_new_tokens,
                            decode="compiled" if compile else "eager")
