"""The pre-fill pass question: training text as trained, inference text as the authors' inference asks.

The authors' PixelQA inference ends the question with "." before " Please localize the
relevant objects with IDs."; their training text adds nothing. Training examples here
keep the trained text, the pipeline ends a question that has no sentence mark with ".".
"""
from __future__ import annotations

import dataclasses

import pytest

from unipixel_ros.model.tiny import build_tiny_unipixel
from unipixel_ros.pipeline import UniPixelPipeline
from unipixel_ros.synthetic import RequestKind, random_request
from unipixel_ros.training.formatting import prompted_examples

SUFFIX = " Please localize the relevant objects with IDs.<|im_end|>"


@pytest.fixture(scope="module")
def model_and_processor():
    return build_tiny_unipixel()


@pytest.mark.parametrize("text, trained, asked", [
    ("What colour is [0]", "What colour is [0] <|ref|>" + SUFFIX, "What colour is [0] <|ref|>." + SUFFIX),
    ("What colour is [0]?", "What colour is [0] <|ref|>?" + SUFFIX, "What colour is [0] <|ref|>?" + SUFFIX),
])
def test_training_keeps_the_trained_text_and_inference_adds_the_period(model_and_processor, monkeypatch, text,
                                                                      trained, asked):
    model, processor = model_and_processor
    request = dataclasses.replace(random_request(1, RequestKind.POINT_QUESTION, num_frames=2, width=56, height=56),
                                  text=text)
    prefill, _ = prompted_examples(processor, request, model.config.sam2_image_size)
    assert trained in processor.tokenizer.decode(prefill.inputs.input_ids[0])

    seen: list[str] = []
    real = model.prompt_seg_tokens

    def spy(inputs):
        seen.append(processor.tokenizer.decode(inputs.input_ids[0]))
        return real(inputs)

    monkeypatch.setattr(model, "prompt_seg_tokens", spy)
    pipeline = UniPixelPipeline(model, processor, max_new_tokens=1)
    pipeline.query(list(request.video.images), [0, 1], request.text, request.prompts)
    assert asked in seen[0]
