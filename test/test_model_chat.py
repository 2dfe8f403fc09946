"""ChatML text with the video placeholder, and encoding a request with the (tiny) processor."""
import numpy as np
import pytest

from unipixel_ros.model.chat import chat_text, decode_response, encode_request
from unipixel_ros.model.inputs import ModelInputError
from unipixel_ros.model.tiny import TINY_FRAME_SIZE, build_tiny_processor
from unipixel_ros.prompts import SEG_TOKEN

HEAD = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>")


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


def test_generation_prompt():
    assert chat_text("Please segment the cup.") == HEAD + "Please segment the cup.<|im_end|>\n<|im_start|>assistant\n"


def test_closed_answer_and_answer_prefix():
    closed = chat_text("Q", response=f"[0] {SEG_TOKEN}")
    assert closed == HEAD + f"Q<|im_end|>\n<|im_start|>assistant\n[0] {SEG_TOKEN}<|im_end|>\n"
    assert chat_text("Q", response_prefix="The best option is (").endswith("assistant\nThe best option is (")


def test_encode_request_expands_the_video_and_uses_two_frames_per_second(processor):
    frames = np.zeros((4, TINY_FRAME_SIZE, 2 * TINY_FRAME_SIZE, 3), dtype=np.uint8)
    inputs = encode_request(processor, chat_text("hi"), frames)
    assert inputs.video_grid_thw.tolist() == [[2, 4, 8]]
    assert inputs.second_per_grid_ts == [1.0]
    video_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((inputs.input_ids == video_id).sum()) == 2 * 2 * 4
    assert inputs.pixel_values_videos.shape == (2 * 4 * 8, 3 * 2 * 14 * 14)


def test_odd_frame_counts_are_refused(processor):
    with pytest.raises(ModelInputError, match="even number of frames"):
        encode_request(processor, chat_text("hi"), np.zeros((3, 56, 56, 3), dtype=np.uint8))


def test_decoding_keeps_special_tokens(processor):
    ids = processor.tokenizer(f"It is [0] {SEG_TOKEN}.")["input_ids"]
    assert decode_response(processor, ids) == f"It is [0] {SEG_TOKEN}."
