"""Training examples are formatted exactly as the pipeline formats the same request at inference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unipixel_ros.model.chat import IM_END
from unipixel_ros.model.sam2_engine import FrameMask, ObjectSegmentation, TrackState
from unipixel_ros.model.tiny import build_tiny_unipixel
from unipixel_ros.pipeline import UniPixelPipeline
from unipixel_ros.prompts import MEM_TOKEN, REF_TOKEN, SEG_TOKEN
from unipixel_ros.synthetic import RequestKind, random_request
from unipixel_ros.training.formatting import (IGNORE, FormattingError, caption_example, click_example,
                                              prompted_examples, response_labels, segmentation_response,
                                              text_referring_example)

W, H = 96, 72


class GroundTruthEngine:
    """Stands in for SAM 2 only: returns the request's true masks for each <|seg|> in turn."""

    image_size = 256

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = list(masks)

    def segment_seg_tokens(self, frames, keys, tokens) -> ObjectSegmentation:
        masks = self.masks.pop(0)
        frames_out = [FrameMask(mask=m, score=1.0, object_score=1.0, low_res_logits=torch.zeros(4, 4)) for m in masks]
        return ObjectSegmentation(frames_out, TrackState(cond={}))

    def segment_seg_tokens_many(self, frames, keys, tokens) -> list[ObjectSegmentation]:
        """The objects of one answer together, as the pipeline asks for them: one per token pair."""
        return [self.segment_seg_tokens(frames, keys, pair) for pair in tokens]


@pytest.fixture(scope="module")
def model_and_processor():
    return build_tiny_unipixel()


def _pipeline_inputs(model, processor, request, monkeypatch) -> dict[str, list]:
    """The model inputs the pipeline builds for ``request`` (pass 1 and generation)."""
    seen: dict[str, list] = {"prefill": [], "generate": []}
    pipeline = UniPixelPipeline(model, processor, GroundTruthEngine(request.masks), max_new_tokens=1)
    real_prefill, real_generate = model.prompt_seg_tokens, model.generate_greedy

    def prefill(inputs):
        seen["prefill"].append(inputs)
        return real_prefill(inputs)

    def generate(inputs, **kwargs):
        seen["generate"].append(inputs)
        return real_generate(inputs, **kwargs)

    monkeypatch.setattr(model, "prompt_seg_tokens", prefill)
    monkeypatch.setattr(model, "generate_greedy", generate)
    stamps = list(range(request.video.num_frames))
    pipeline.query(list(request.video.images), stamps, request.text, request.prompts)
    return seen


def _same_video(a, b) -> None:
    assert torch.equal(a.video_grid_thw, b.video_grid_thw)
    assert torch.equal(a.pixel_values_videos, b.pixel_values_videos)
    assert a.second_per_grid_ts == b.second_per_grid_ts


def _answer_suffix(processor, response: str) -> list[int]:
    return processor.tokenizer(response + IM_END + "\n", add_special_tokens=False)["input_ids"]


def test_segmentation_responses_name_one_seg_per_object():
    assert segmentation_response(1) == f"Sure, it is {SEG_TOKEN}."
    assert segmentation_response(2) == f"Sure, they are {SEG_TOKEN} and {SEG_TOKEN}."
    assert segmentation_response(3) == f"Sure, they are {SEG_TOKEN}, {SEG_TOKEN} and {SEG_TOKEN}."
    with pytest.raises(FormattingError):
        segmentation_response(0)


def test_labels_teach_exactly_the_answer_and_its_end_token(model_and_processor):
    _, processor = model_and_processor
    tokenizer = processor.tokenizer
    text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nSure, it is <|seg|>.<|im_end|>\n"
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    labels = response_labels(ids, tokenizer, "Sure, it is <|seg|>.")
    taught = labels[labels != IGNORE]
    assert tokenizer.decode(taught) == "Sure, it is <|seg|>.<|im_end|>"
    # position i predicts token i + 1
    first = int(torch.nonzero(labels != IGNORE)[0])
    assert tokenizer.decode(ids[: first + 1]).endswith("assistant\n") and labels[first] == ids[first + 1]
    with pytest.raises(FormattingError, match="does not end with the answer"):
        response_labels(ids, tokenizer, "Something else.")


def test_text_referring_example_is_the_pipelines_prompt_plus_the_answer(model_and_processor, monkeypatch):
    model, processor = model_and_processor
    request = random_request(3, RequestKind.TEXT_REFERRING, num_frames=4, width=W, height=H)
    example = text_referring_example(processor, request)
    seen = _pipeline_inputs(model, processor, request, monkeypatch)
    (generated,) = seen["generate"]
    response = segmentation_response(1)
    expected = generated.input_ids[0].tolist() + _answer_suffix(processor, response)
    assert example.inputs.input_ids[0].tolist() == expected
    _same_video(example.inputs, generated)
    np.testing.assert_array_equal(example.seg_masks, request.masks)
    assert example.frames.shape == (4, H, W, 3) and example.num_frames == 4


@pytest.mark.parametrize("kind", [RequestKind.POINT_QUESTION, RequestKind.BOX_QUESTION, RequestKind.MULTI_OBJECT])
def test_prompted_examples_are_the_pipelines_two_passes(model_and_processor, monkeypatch, kind):
    model, processor = model_and_processor
    seed = 0
    while True:  # a multi-object request with prompts (the other half names objects in text)
        request = random_request(seed, kind, num_frames=5, width=W, height=H)
        if request.prompts:
            break
        seed += 1
    prefill, injection = prompted_examples(processor, request, GroundTruthEngine.image_size)
    seen = _pipeline_inputs(model, processor, request, monkeypatch)
    (pipeline_prefill,) = seen["prefill"]
    (pipeline_answer,) = seen["generate"]

    assert prefill.inputs.input_ids.tolist() == pipeline_prefill.input_ids.tolist()
    _same_video(prefill.inputs, pipeline_prefill)
    assert len(prefill.inputs.references) == len(request.prompts)
    for mine, theirs in zip(prefill.inputs.references, pipeline_prefill.references):
        assert torch.equal(mine.coords, theirs.coords) and mine.coords.dtype == theirs.coords.dtype
        assert torch.equal(mine.labels, theirs.labels) and mine.frame_index == theirs.frame_index
    np.testing.assert_array_equal(prefill.seg_masks, request.masks)
    text = processor.tokenizer.decode(prefill.labels[prefill.labels != IGNORE])
    assert text == " ".join(f"[{k}] {SEG_TOKEN}" for k in range(len(request.prompts))) + IM_END

    expected = pipeline_answer.input_ids[0].tolist() + _answer_suffix(processor, request.answer)
    assert injection.inputs.input_ids[0].tolist() == expected
    assert torch.equal(injection.inputs.region_masks, pipeline_answer.region_masks)
    _same_video(injection.inputs, pipeline_answer)
    decoded = processor.tokenizer.decode(injection.inputs.input_ids[0])
    assert MEM_TOKEN in decoded and REF_TOKEN not in decoded and injection.seg_masks is None

    # Each <|mem|> knows its object's colour and shape.
    mem_count = int((injection.inputs.input_ids == processor.tokenizer.convert_tokens_to_ids(MEM_TOKEN)).sum())
    assert len(injection.memory_attributes) == mem_count
    objects = request.video.scene.objects
    named = {(objects[k].colour, objects[k].shape) for k in request.object_ids}
    assert {(a.colour, a.shape) for a in injection.memory_attributes if a is not None} <= named
    assert any(a is not None for a in injection.memory_attributes)


def test_captioning_asks_with_ref_tokens_and_answers_directly(model_and_processor):
    _, processor = model_and_processor
    request = random_request(1, RequestKind.POINT_QUESTION, num_frames=1, width=W, height=H)
    example = caption_example(processor, request, 256)
    decoded = processor.tokenizer.decode(example.inputs.input_ids[0])
    assert f"[0] {REF_TOKEN}" in decoded and MEM_TOKEN not in decoded
    assert processor.tokenizer.decode(example.labels[example.labels != IGNORE]) == request.answer + IM_END


def test_click_example_keeps_the_prompt_and_its_objects_masks():
    request = random_request(2, RequestKind.BOX_QUESTION, num_frames=4, width=W, height=H)
    example = click_example(request)
    assert example.prompt == request.prompts[0]
    np.testing.assert_array_equal(example.masks, request.masks[0])
    text_request = random_request(2, RequestKind.TEXT_REFERRING, num_frames=1, width=W, height=H)
    with pytest.raises(FormattingError, match="no point or box"):
        click_example(text_request)
