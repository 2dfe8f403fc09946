"""Training examples from synthetic requests, formatted exactly as the pipeline formats requests.

Weights trained here must work through :class:`unipixel_ros.pipeline.UniPixelPipeline`,
so every example is built with the pipeline's own pieces: the same frame plan and
resize (:mod:`unipixel_ros.sampling`), chat text (:mod:`unipixel_ros.model.chat`),
question composition and ``<|ref|>`` encoding (:mod:`unipixel_ros.prompts`, the
pipeline's SAM-frame reference conversion) and memory prefix / region masks
(:mod:`unipixel_ros.memory`, :mod:`unipixel_ros.regions`). How each request kind
becomes passes of the language model:

* text referring: one pass, the answer ``"Sure, it is <|seg|>."`` (one ``<|seg|>`` per
  named object, in the order named);
* a question about point / box prompted objects: the pre-fill pass (question with
  ``[k] <|ref|>``, the localize suffix, answer ``"[0] <|seg|> ..."``) and the injection
  pass (memory prefix with ``<|mem|>`` pooled over the objects' masks, then the
  question; answer the expected text; each ``<|mem|>`` also knows its object's colour
  and shape, ``memory_attributes``, for :mod:`unipixel_ros.training.region_probe`).
  Training pools the ground-truth masks where inference pools the pre-fill pass's
  predictions;
* region captioning (the prompt encoder's pre-training): the question with
  ``[0] <|ref|>`` answered directly, no masks;
* a click or box alone (click-to-segment): no language model, SAM 2's own prompt.

Labels follow the next-token convention: ``labels[i]`` is the token position ``i``
must predict, ``IGNORE`` where nothing is learnt (everything but the assistant's answer
and its closing ``<|im_end|>``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unipixel_ros.memory import memory_question
from unipixel_ros.model.chat import IM_END, chat_text, encode_request
from unipixel_ros.model.inputs import UniPixelInputs
from unipixel_ros.pipeline import UniPixelPipeline, _strip_ref_tokens
from unipixel_ros.prompts import (SEG_TOKEN, BoxPrompt, PointPrompt, compose_question, localize_objects_question,
                                  order_ref_prompts, referenced_objects, segmentation_answer)
from unipixel_ros.regions import region_cells, region_token_masks
from unipixel_ros.sampling import plan_frames, select_frames
from unipixel_ros.synthetic import SyntheticRequest
from unipixel_ros.training.attributes import Attributes, request_attributes

IGNORE = -100


class FormattingError(ValueError):
    """A request that cannot be turned into a training example (e.g. no answer to learn)."""


def segmentation_response(count: int) -> str:
    """The answer to a text segmentation request naming ``count`` objects."""
    if count < 1:
        raise FormattingError(f"a segmentation answer needs at least one object, got {count}")
    if count == 1:
        return f"Sure, it is {SEG_TOKEN}."
    marks = [SEG_TOKEN] * count
    return f"Sure, they are {', '.join(marks[:-1])} and {marks[-1]}."


@dataclass
class ChatExample:
    """One pass of the language model and what it must learn.

    ``seg_masks`` [N, T, H, W] holds the target of each ``<|seg|>`` in the text, in
    order, over the whole window ``frames`` [T, H, W, 3] (SAM 2 segments every frame).
    """

    kind: str
    inputs: UniPixelInputs
    labels: torch.Tensor
    frames: np.ndarray
    seg_masks: np.ndarray | None = None
    seed_attributes: list[Attributes] | None = None  # what each <|seg|>'s request words name
    # Injection pass: the object behind each <|mem|> token (None: not visible on the sampled frames).
    memory_attributes: list[Attributes | None] | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class ClickExample:
    """A click or box on one frame and the object's masks on every frame of the window."""

    frames: np.ndarray
    prompt: PointPrompt | BoxPrompt
    masks: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def response_labels(input_ids: torch.Tensor, tokenizer, response: str) -> torch.Tensor:
    """Next-token labels that teach the closed assistant turn ``response`` at the end of ``input_ids``."""
    ids = input_ids.reshape(-1)
    answer = tokenizer(response + IM_END, add_special_tokens=False)["input_ids"]
    tail = tokenizer("\n", add_special_tokens=False)["input_ids"]
    end = ids.numel() - len(tail)
    start = end - len(answer)
    if start < 1 or ids[start:end].tolist() != answer or ids[end:].tolist() != tail:
        raise FormattingError(f"the tokenised text does not end with the answer {response!r}")
    labels = torch.full_like(ids, IGNORE)
    labels[start - 1:end - 1] = ids[start:end]
    return labels


def _chat_example(kind: str, processor, user_text: str, response: str, llm_frames: list[np.ndarray],
                  frames: np.ndarray, seg_masks: np.ndarray | None = None, references=(),
                  region_masks: torch.Tensor | None = None) -> ChatExample:
    inputs = encode_request(processor, chat_text(user_text, response=response), llm_frames,
                            references=references, region_masks=region_masks)
    labels = response_labels(inputs.input_ids, processor.tokenizer, response)
    return ChatExample(kind, inputs, labels, frames, seg_masks)


def text_referring_example(processor, request: SyntheticRequest) -> ChatExample:
    """A text segmentation request (no visual prompt): the pipeline's text-only flow."""
    if request.prompts:
        raise FormattingError("text referring takes no visual prompts; use prompted_examples")
    frames = request.video.images
    plan = plan_frames(len(frames), *frames.shape[1:3])
    masks = request.masks
    example = _chat_example("text_referring", processor, request.text.strip(), segmentation_response(len(masks)),
                            select_frames(list(frames), plan), frames, seg_masks=masks)
    example.seed_attributes = request_attributes(request)
    return example


def prompted_examples(processor, request: SyntheticRequest, sam_image_size: int) -> tuple[ChatExample, ChatExample]:
    """The pre-fill and injection passes of a question about point / box prompted objects."""
    if not request.prompts or request.answer is None:
        raise FormattingError("a prompted example needs visual prompts and an expected answer")
    frames = request.video.images
    height, width = frames.shape[1:3]
    question = compose_question(request.text, request.prompts)
    plan = plan_frames(len(frames), height, width, keep=[p.frame_index for p in request.prompts])
    llm_frames = select_frames(list(frames), plan)
    ordered = order_ref_prompts(question, request.prompts)
    references = [UniPixelPipeline._reference(p, plan, width, height, sam_image_size) for p in ordered]
    indices = [p.object_index for p in ordered]
    objects = dict(zip(range(len(request.object_ids)), request.masks))
    prefill = _chat_example("prefill", processor, localize_objects_question(question), segmentation_answer(indices),
                            llm_frames, frames, seg_masks=np.stack([objects[k] for k in indices]),
                            references=references)

    order = [k for k in referenced_objects(question) if k in objects]
    sampled = np.stack([np.stack([objects[k][i] for k in order]) for i in plan.indices])  # N sampled, unpadded
    injection = _chat_example(f"answer_{request.kind.value}", processor,
                              memory_question(_strip_ref_tokens(question), order, sampled), request.answer,
                              llm_frames, frames, region_masks=region_token_masks(sampled, plan.grid_thw))
    scene_objects = [request.video.scene.objects[request.object_ids[k]] for k in order]
    visible = sampled.any(axis=(0, 2, 3))
    injection.memory_attributes = [Attributes(scene_objects[o].colour, scene_objects[o].shape) if visible[o] else None
                                   for o, _ in region_cells(injection.inputs.region_masks)]
    return prefill, injection


def caption_example(processor, request: SyntheticRequest, sam_image_size: int) -> ChatExample:
    """Region captioning: the prompted question answered in one pass from the ``<|ref|>`` tokens."""
    if not request.prompts or request.answer is None:
        raise FormattingError("a captioning example needs visual prompts and an expected answer")
    frames = request.video.images
    height, width = frames.shape[1:3]
    question = compose_question(request.text, request.prompts)
    plan = plan_frames(len(frames), height, width, keep=[p.frame_index for p in request.prompts])
    references = [UniPixelPipeline._reference(p, plan, width, height, sam_image_size)
                  for p in order_ref_prompts(question, request.prompts)]
    return _chat_example("caption", processor, question, request.answer, select_frames(list(frames), plan), frames,
                         references=references)


def click_example(request: SyntheticRequest) -> ClickExample:
    """The first prompt of a prompted request as a bare click / box (SAM 2 alone)."""
    prompt = next((p for p in request.prompts if isinstance(p, (PointPrompt, BoxPrompt))), None)
    if prompt is None:
        raise FormattingError("the request has no point or box prompt")
    return ClickExample(request.video.images, prompt, request.masks[prompt.object_index])
