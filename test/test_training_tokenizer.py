"""The synthetic tokenizer: one token per request word, byte fallback for everything else, saved and reloaded."""
from __future__ import annotations

import pytest
from transformers import Qwen2_5_VLProcessor

from unipixel_ros.model.tiny import TINY_SPECIAL_TOKENS
from unipixel_ros.synthetic import RequestKind, random_request
from unipixel_ros.synthetic.scenes import PALETTE, SHAPES
from unipixel_ros.training.tokenizer import WORDS, build_synthetic_processor, build_synthetic_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_synthetic_tokenizer()


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_every_word_is_one_token_bare_and_after_a_space(tokenizer):
    assert set(PALETTE) | set(SHAPES) | {"yes", "no", "left", "Sure"} <= set(WORDS)
    for word in WORDS:
        assert len(_ids(tokenizer, word)) == 1, word
        assert len(_ids(tokenizer, " " + word)) == 1, word
    assert _ids(tokenizer, " red") != _ids(tokenizer, "red")


def test_requests_and_answers_are_short_and_round_trip(tokenizer):
    for seed, kind in enumerate(RequestKind):
        request = random_request(seed, kind, width=96, height=72)
        for text in filter(None, (request.text, request.answer)):
            ids = _ids(tokenizer, text)
            assert tokenizer.decode(ids) == text
            assert len(ids) <= len(text.split()) * 4, text
    odd = "Zebra_42 über <x>"
    assert tokenizer.decode(_ids(tokenizer, odd)) == odd
    assert _ids(tokenizer, "The answer is red.")[-2:] == _ids(tokenizer, " red.")


def test_special_tokens_are_single_tokens_with_their_own_ids(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS]
    assert len(set(ids)) == len(ids) and min(ids) >= 256
    assert _ids(tokenizer, "[0] <|seg|>") == _ids(tokenizer, "[0] ") + [tokenizer.convert_tokens_to_ids("<|seg|>")]


def test_the_processor_reloads_with_the_same_tokens(tmp_path):
    processor = build_synthetic_processor()
    processor.save_pretrained(str(tmp_path))
    loaded = Qwen2_5_VLProcessor.from_pretrained(str(tmp_path))
    text = "What colour is [0] <|ref|>? Please localize the relevant objects with IDs."
    assert loaded.tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
    assert len(loaded.tokenizer) == len(processor.tokenizer)
