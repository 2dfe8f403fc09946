"""Prompt types, request validation and the trained question/answer text formats."""
import dataclasses
import math

import numpy as np
import pytest

from unipixel_ros.prompts import (MEM_TOKEN, REF_TOKEN, SEG_TOKEN, SPECIAL_TOKENS, BoxPrompt, MaskPrompt, PointPrompt,
                                  PromptError, SegmentationStyle, compose_question, insert_ref_tokens,
                                  localize_objects_question, order_ref_prompts, ref_token_objects, referenced_objects,
                                  segmentation_answer, segmentation_request, validate_request)

W, H = 65, 47  # odd, non-square


def point(k=0, frame=0, x=10.0, y=20.0, positive=True):
    return PointPrompt(object_index=k, frame_index=frame, x=x, y=y, positive=positive)


def box(k=0, frame=0, x0=1.0, y0=2.0, x1=30.0, y1=40.0):
    return BoxPrompt(object_index=k, frame_index=frame, x0=x0, y0=y0, x1=x1, y1=y1)


def mask(k=0, frame=0, shape=(H, W), on=True):
    m = np.zeros(shape, bool)
    m[3:5, 4:9] = on
    return MaskPrompt(object_index=k, frame_index=frame, mask=m)


def test_token_strings():
    assert (REF_TOKEN, SEG_TOKEN, MEM_TOKEN) == ("<|ref|>", "<|seg|>", "<|mem|>")
    assert SPECIAL_TOKENS == (REF_TOKEN, SEG_TOKEN, MEM_TOKEN)


def test_prompts_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        point().x = 3.0
    assert point() == point() and point() != point(x=11.0)


def test_referenced_objects_in_order_of_first_mention():
    assert referenced_objects("Is [1] left of [0]? Compare [1] and [12].") == (1, 0, 12)
    assert referenced_objects("no objects [a] [-1]") == ()


def test_ref_token_follows_first_mention_only():
    text = "What is [1] doing near [0]? Is [1] moving?"
    question = compose_question(text, [point(k=0), box(k=1)])
    assert question == "What is [1] <|ref|> doing near [0] <|ref|>? Is [1] moving?"
    assert ref_token_objects(question) == (1, 0)
    assert order_ref_prompts(question, [point(k=0), box(k=1)]) == [box(k=1), point(k=0)]


def test_mask_prompts_get_no_ref_token():
    assert compose_question("[0] and [1]", [point(k=0), mask(k=1)]) == "[0] <|ref|> and [1]"


def test_empty_text_becomes_the_prompted_objects():
    assert compose_question("", [box(k=2), point(k=0)]) == "[0] <|ref|> [2] <|ref|>"
    assert compose_question("  ", [point(k=0)]) == "[0] <|ref|>"


def test_insert_ref_tokens_needs_the_object_in_the_text():
    with pytest.raises(PromptError, match=r"cannot mark \[3\] with <\|ref\|>: the text does not name it"):
        insert_ref_tokens("[0] only", [0, 3])


def test_order_ref_prompts_reports_mismatches():
    with pytest.raises(PromptError, match=r"the question has no <\|ref\|> for \[1\]"):
        order_ref_prompts("[0] <|ref|> and [1]", [point(k=0), point(k=1)])
    with pytest.raises(PromptError, match=r"marks \[0\] with <\|ref\|> but it has no point or box prompt"):
        order_ref_prompts("[0] <|ref|>", [mask(k=0)])


def test_memory_prefill_question_and_answer():
    question = compose_question("What is [0] holding, and where is [1]?", [point(k=0), box(k=1)])
    assert localize_objects_question(question) == (
        "What is [0] <|ref|> holding, and where is [1] <|ref|>? Please localize the relevant objects with IDs.")
    assert segmentation_answer([0, 1]) == "[0] <|seg|> [1] <|seg|>"
    assert segmentation_answer([3]) == "[3] <|seg|>"


@pytest.mark.parametrize("style, expected", [
    (SegmentationStyle.SENTENCE, "The red cup. Please provide the segmentation mask."),
    (SegmentationStyle.QUESTION, "The red cup. Please answer the question and provide the segmentation mask."),
    (SegmentationStyle.EXPLANATORY, "The red cup. Please provide the segmentation mask and explain why."),
    (SegmentationStyle.DESCRIPTION, "Please segment the object according to the description: The red cup."),
])
def test_segmentation_request_styles(style, expected):
    assert segmentation_request(" The red cup. ", style) == expected


def test_valid_requests_pass():
    validate_request("Please segment the tallest giraffe.", [], 1, W, H)
    validate_request("", [point(x=W - 0.5, y=H - 0.5)], 3, W, H)
    validate_request("What is [0] doing with [1]?", [point(k=0, frame=2), box(k=1, x0=0, y0=0, x1=W, y1=H)], 3, W, H)
    validate_request("Describe [0].", [mask(k=0)], 1, W, H)


def test_prompt_error_is_a_value_error():
    assert issubclass(PromptError, ValueError)


@pytest.mark.parametrize("text, prompts, frames, message", [
    ("hello", [], 0, "no frames"),
    ("  ", [], 2, "empty request"),
    ("[0]", [point(x=math.nan)], 2, r"prompt for \[0\]: point has a NaN or infinite coordinate"),
    ("[0]", [box(x1=math.inf)], 2, r"prompt for \[0\]: box has a NaN or infinite coordinate"),
    ("[0]", [point(x=W)], 2, rf"point \({W}, 20.0\) is outside the {W}x{H} image"),
    ("[0]", [point(y=-0.1)], 2, "is outside the 65x47 image"),
    ("[0]", [box(x1=W + 1)], 2, r"box \(1.0, 2.0, 66, 40.0\) is outside the 65x47 image"),
    ("[0]", [box(x0=5, x1=5)], 2, "has zero area"),
    ("[0]", [box(y0=40, y1=10)], 2, "has zero area"),
    ("[0]", [point(), point(x=3)], 2, r"two prompts for \[0\] \(PointPrompt and PointPrompt\)"),
    ("[0]", [point(), box()], 2, r"two prompts for \[0\] \(PointPrompt and BoxPrompt\); give one point"),
    ("What is [0]?", [point(k=0), point(k=2)], 2, r"prompt for \[2\] but the text names only \[0\]"),
    ("What is this?", [point(k=0)], 2, r"prompt for \[0\] but the text names no object"),
    ("Is [0] near [1]?", [point(k=0)], 2, r"the text names \[1\] but no prompt is given for it"),
    ("[0]", [mask(shape=(W, H))], 2, r"mask has size \(65, 47\), expected \(height, width\) = \(47, 65\)"),
    ("[0]", [mask(on=False)], 2, r"prompt for \[0\]: mask is empty"),
    ("[0]", [point(frame=2)], 2, "frame index 2 is outside the window of 2 frames"),
    ("[0]", [point(k=-1)], 2, "object index must be >= 0"),
    ("[0]", [point(positive=False)], 2, "negative points are not supported"),
    ("[0] <|seg|>", [point()], 2, r"text must not contain the reserved token <\|seg\|>"),
])
def test_each_invalid_request_names_its_problem(text, prompts, frames, message):
    with pytest.raises(PromptError, match=message):
        validate_request(text, prompts, frames, W, H)


def test_memory_prompt_counts_as_the_objects_prompt() -> None:
    from unipixel_ros.prompts import MemoryPrompt

    validate_request("What is [0] doing?", [MemoryPrompt(object_index=0, memory_id=3)], 4, 64, 48)
    with pytest.raises(PromptError, match=r"memory id must be >= 1, got 0"):
        validate_request("What is [0] doing?", [MemoryPrompt(object_index=0, memory_id=0)], 4, 64, 48)
    with pytest.raises(PromptError, match=r"two prompts for \[0\]"):
        validate_request("What is [0]?", [MemoryPrompt(object_index=0, memory_id=3),
                                          PointPrompt(object_index=0, frame_index=0, x=1, y=1)], 4, 64, 48)


# ---------------------------------------------------------------- request size limits

def test_request_limits_refuse_oversize_requests_naming_the_parameter():
    from unipixel_ros.prompts import DEFAULT_MAX_PROMPTS, RequestLimits

    many = [point(k=k) for k in range(DEFAULT_MAX_PROMPTS + 1)]
    text = " ".join(f"[{k}]" for k in range(len(many)))
    with pytest.raises(PromptError, match=r"17 visual prompts in one request; at most 16 are allowed "
                                          r"\(query.max_prompts\)"):
        validate_request(text, many, 2, W, H)
    validate_request(text.rsplit(" ", 1)[0], many[:-1], 2, W, H)

    two_masks = [mask(k=0), mask(k=1)]
    limits = RequestLimits(max_prompt_pixels=2 * W * H - 1)
    with pytest.raises(PromptError, match=rf"the mask prompts hold {2 * W * H} pixels; at most {2 * W * H - 1} "
                                          r"per request are allowed \(query.max_prompt_pixels\)"):
        validate_request("[0] [1]", two_masks, 2, W, H, limits)
    validate_request("[0] [1]", two_masks, 2, W, H, RequestLimits(max_prompt_pixels=2 * W * H))

    with pytest.raises(PromptError, match=r"the text is 9 tokens long; at most 8 are allowed \(query.max_text_tokens\)"):
        RequestLimits(max_text_tokens=8).check_text_tokens(9)
    RequestLimits(max_text_tokens=8).check_text_tokens(8)


@pytest.mark.parametrize("field, value", [("max_prompts", 0), ("max_text_tokens", -1), ("max_prompt_pixels", 1.5),
                                          ("max_prompts", True)])
def test_request_limits_must_be_positive_integers(field, value):
    from unipixel_ros.prompts import RequestLimits

    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1"):
        RequestLimits(**{field: value})


@pytest.mark.parametrize("prompt, message", [
    (PointPrompt(object_index=0, frame_index=1.5, x=1, y=1), r"frame index must be an integer, got 1.5"),
    (PointPrompt(object_index=True, frame_index=0, x=1, y=1), r"object index must be an integer, got True"),
    (PointPrompt(object_index=0, frame_index=0, x="3", y=1), r"x must be a number, got '3'"),
    (BoxPrompt(object_index=0, frame_index=0, x0=1, y0=None, x1=5, y1=5), r"y0 must be a number, got None"),
    (PointPrompt(object_index=0, frame_index=0, x=1e300, y=1), r"point \(1e\+300, 1\) is outside"),
    (BoxPrompt(object_index=0, frame_index=0, x0=0, y0=0, x1=3.4e38, y1=5), r"is outside the 65x47 image"),
    (PointPrompt(object_index=0, frame_index=2**70, x=1, y=1), "is outside the window of 2 frames"),
])
def test_numeric_fields_are_checked_for_type_and_range(prompt, message):
    with pytest.raises(PromptError, match=message):
        validate_request("[0] [1]" if prompt.object_index is True else "[0]", [prompt], 2, W, H)


def test_memory_prompt_ids_must_be_integers():
    from unipixel_ros.prompts import MemoryPrompt

    with pytest.raises(PromptError, match=r"memory id must be an integer, got 2.0"):
        validate_request("[0]", [MemoryPrompt(object_index=0, memory_id=2.0)], 2, W, H)


# ---------------------------------------------------------------- the pre-fill question: training vs inference

@pytest.mark.parametrize("question, expected", [
    ("What is [0] <|ref|> doing", "What is [0] <|ref|> doing. Please localize the relevant objects with IDs."),
    ("What is [0] <|ref|> doing?", "What is [0] <|ref|> doing? Please localize the relevant objects with IDs."),
    ("Describe [0] <|ref|>.", "Describe [0] <|ref|>. Please localize the relevant objects with IDs."),
    ("Look at [0] <|ref|>!", "Look at [0] <|ref|>! Please localize the relevant objects with IDs."),
    ("[0] <|ref|> [1] <|ref|>", "[0] <|ref|> [1] <|ref|>. Please localize the relevant objects with IDs."),
    ("Where is [0] <|ref|>?  ", "Where is [0] <|ref|>? Please localize the relevant objects with IDs."),
])
def test_inference_prefill_question_ends_the_question_with_a_sentence_mark(question, expected):
    from unipixel_ros.prompts import localize_objects_question_at_inference

    assert localize_objects_question_at_inference(question) == expected


def test_training_prefill_question_adds_no_period():
    assert localize_objects_question("What is [0] <|ref|> doing") == (
        "What is [0] <|ref|> doing Please localize the relevant objects with IDs.")
    assert localize_objects_question("What is [0] <|ref|> doing?") == (
        "What is [0] <|ref|> doing? Please localize the relevant objects with IDs.")
