"""The ROS-free pipeline end to end on the tiny model: every request flow, bad input, cache, cancel."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.pipeline import UniPixelPipeline, build_pipeline, frame_key, name_objects
from unipixel_ros.prompts import (REF_TOKEN, BoxPrompt, MaskPrompt, MemoryPrompt, PointPrompt, PromptError,
                                  RequestLimits)
from unipixel_ros.results import QueryCancelled

H, W = 40, 56


class ScriptedHead(nn.Module):
    """Stands in for the vocabulary projection only: emits a fixed token script, then EOS.

    Everything else (vision, language model, pre-norm hidden capture, seg head, SAM 2)
    runs for real, so the masks follow from the <|seg|> positions the script creates.
    """

    def __init__(self, vocab: int, script: list[int], eos: int) -> None:
        super().__init__()
        self.vocab, self.script, self.eos, self.calls = vocab, list(script), eos, 0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        token = self.script[self.calls] if self.calls < len(self.script) else self.eos
        self.calls += 1
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        logits[..., token] = 1.0
        return logits


@pytest.fixture(scope="module")
def pipeline() -> UniPixelPipeline:
    torch.manual_seed(0)
    return build_pipeline("tiny", device="cpu", max_new_tokens=6, log=lambda _: None)


@pytest.fixture()
def scripted(pipeline: UniPixelPipeline):
    """Make the next answers say the given tokens (by text), restoring the real head afterwards."""
    real = pipeline.model.lm_head
    tokenizer = pipeline.processor.tokenizer
    config = pipeline.model.config

    def install(*pieces: str) -> ScriptedHead:
        ids = [tokenizer.convert_tokens_to_ids(p) for p in pieces]
        head = ScriptedHead(config.text_config.vocab_size, ids, pipeline.model._eos_ids()[0])
        pipeline.model.lm_head = head
        return head

    yield install
    pipeline.model.lm_head = real


def video(n: int = 3, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(n)]
    return frames, [1_000_000_000 + i * 100_000_000 for i in range(n)]


def test_text_query_segments_every_seg_token_on_every_frame(pipeline, scripted) -> None:
    scripted("<|seg|>", "<|seg|>")
    frames, stamps = video(3)
    result = pipeline.query(frames, stamps, "Please segment the red circle.")
    assert len(result.objects) == 2
    for obj in result.objects:
        assert obj.masks.shape == (3, H, W) and obj.masks.dtype == bool
        assert obj.scores.shape == (3,)
        assert obj.memory_id is None
    assert "<|seg|>" not in result.answer
    assert {"prepare", "prefill", "decode", "segment"} <= set(result.timings)


def test_single_image_is_accepted(pipeline, scripted) -> None:
    scripted("<|seg|>")
    frames, stamps = video(1)
    result = pipeline.query(frames, stamps, "Please segment the shape.")
    assert [o.masks.shape for o in result.objects] == [(1, H, W)]


def test_text_without_seg_token_returns_no_objects(pipeline, scripted) -> None:
    scripted("a")
    frames, stamps = video(2)
    result = pipeline.query(frames, stamps, "What is in the video?")
    assert result.objects == [] and result.answer


def test_point_and_box_prompts_run_prefill_then_injection(pipeline, scripted, monkeypatch) -> None:
    seen_questions: list[str] = []
    real_prompt_seg_tokens = pipeline.model.prompt_seg_tokens

    def spy(inputs):
        seen_questions.append(pipeline.processor.tokenizer.decode(inputs.input_ids[0]))
        assert [r.frame_index for r in inputs.references] == [0, 2]
        return real_prompt_seg_tokens(inputs)

    monkeypatch.setattr(pipeline.model, "prompt_seg_tokens", spy)
    scripted("a")
    frames, stamps = video(3)
    prompts = [PointPrompt(object_index=0, frame_index=0, x=10, y=20),
               BoxPrompt(object_index=1, frame_index=2, x0=2, y0=3, x1=30, y1=35)]
    result = pipeline.query(frames, stamps, "Is [0] left of [1]?", prompts)
    assert [o.object_index for o in result.objects] == [0, 1]
    assert all(o.masks.shape == (3, H, W) for o in result.objects)
    assert "segment_prompted" in result.timings
    # pass 1 pre-fills "[0] <|seg|> [1] <|seg|>" after the question with its <|ref|> marks
    assert f"[0] {REF_TOKEN}" in seen_questions[0] and "[0] <|seg|> [1] <|seg|>" in seen_questions[0]


def test_injection_question_has_one_mem_token_per_nonempty_frame_pair(pipeline, scripted, monkeypatch) -> None:
    questions: list[str] = []
    real_generate = pipeline.model.generate_greedy

    def spy(inputs, **kwargs):
        questions.append(pipeline.processor.tokenizer.decode(inputs.input_ids[0]))
        return real_generate(inputs, **kwargs)

    monkeypatch.setattr(pipeline.model, "generate_greedy", spy)
    scripted("a")
    frames, stamps = video(4)
    mask = np.zeros((H, W), bool)
    mask[5:15, 5:25] = True
    result = pipeline.query(frames, stamps, "What colour is [0]?", [MaskPrompt(object_index=0, frame_index=3, mask=mask)])
    assert [o.object_index for o in result.objects] == [0]
    # the drawn mask is injected on its own frame only (frame 4 of 4: the second frame pair)
    assert "Here is a video with 4 frames denoted as <1> to <4>." in questions[0]
    assert "[0]: <3>-<4> <|mem|>\n" in questions[0] and questions[0].count("<|mem|>") == 1
    assert REF_TOKEN not in questions[0]


def test_remembered_objects_answer_follow_ups_and_track(pipeline, scripted) -> None:
    scripted("a")
    frames, stamps = video(3)
    memory = ObjectMemoryBank()
    first = pipeline.query(frames, stamps, "What is [0]?", [PointPrompt(object_index=0, frame_index=1, x=9, y=9)],
                           memory=memory, remember=True)
    (obj,) = first.objects
    assert obj.memory_id == 1 and memory.get(1).stamps == tuple(stamps)
    np.testing.assert_array_equal(np.stack(memory.get(1).masks), obj.masks)

    scripted("a")
    follow_up = pipeline.query(frames, stamps, "Where does [0] go?", [MemoryPrompt(object_index=0, memory_id=1)],
                               memory=memory)
    assert follow_up.answer

    new_frame = video(1, seed=5)[0][0]
    tracked = pipeline.track(memory, new_frame, stamps[-1] + 100_000_000)
    assert set(tracked) == {1} and tracked[1].mask.shape == (H, W)
    assert memory.get(1).stamps[-1] == stamps[-1] + 100_000_000


def test_tracking_steps_only_the_objects_behind_the_frame(pipeline) -> None:
    """An object clicked on a newer frame is not stepped back onto an older one that an object
    left behind still catches up through (SAM 2 takes each object's frames in time order)."""
    frames, stamps = video(4)
    memory = ObjectMemoryBank()
    for frame_index in (0, 3):
        obj = pipeline.segment_prompt([frames[frame_index]], [stamps[frame_index]],
                                      PointPrompt(object_index=0, frame_index=0, x=20, y=10))
        object_id = memory.add("click", [(stamps[frame_index], obj.masks[0], float(obj.scores[0]))])
        memory.attach_tracking(object_id, obj.tracking)
    assert set(pipeline.track(memory, frames[1], stamps[1])) == {1}
    assert memory.get(2).stamps == (stamps[3],)
    assert set(pipeline.track(memory, frames[2], stamps[2])) == {1}
    assert set(pipeline.track(memory, video(1, seed=5)[0][0], stamps[3] + 100_000_000)) == {1, 2}


def test_click_segments_with_sam_alone(pipeline, monkeypatch) -> None:
    monkeypatch.setattr(pipeline.model, "generate_greedy", lambda *a, **k: pytest.fail("no language model pass"))
    frames, stamps = video(3)
    obj = pipeline.segment_prompt(frames, stamps, PointPrompt(object_index=0, frame_index=2, x=20, y=10))
    assert obj.masks.shape == (3, H, W) and obj.label == "click" and obj.tracking is not None


def test_second_query_on_the_same_frames_reuses_sam_features(pipeline, scripted) -> None:
    frames, stamps = video(3, seed=11)
    scripted("<|seg|>")
    pipeline.query(frames, stamps, "Please segment it.")
    encoded = pipeline.engine.encode_count
    scripted("<|seg|>")
    pipeline.query(frames, stamps, "Please segment it again.")
    assert pipeline.engine.encode_count == encoded


def test_equal_stamps_of_different_images_do_not_share_features() -> None:
    a, b = video(1, seed=1)[0][0], video(1, seed=2)[0][0]
    assert frame_key(a, 5) != frame_key(b, 5) and frame_key(a, 5) == frame_key(a.copy(), 5)


def test_progress_reports_tokens_and_cancel_stops(pipeline, scripted) -> None:
    frames, stamps = video(2)
    stages: list[tuple[str, int]] = []
    scripted("a", "b", "c")
    pipeline.query(frames, stamps, "Describe.", progress=lambda s, n, _: stages.append((s, n)))
    assert ("decode", 1) in stages and ("decode", 3) in stages

    cancel = threading.Event()

    def cancel_on_second_token(stage: str, tokens: int, _: str) -> None:
        if tokens >= 2:
            cancel.set()

    scripted("a", "b", "c", "d")
    with pytest.raises(QueryCancelled):
        pipeline.query(frames, stamps, "Describe.", progress=cancel_on_second_token, cancel=cancel)
    # the pipeline is free again afterwards
    scripted("a")
    assert pipeline.query(frames, stamps, "Describe.").answer


@pytest.mark.parametrize("make, message", [
    (lambda f, s: ([], [], "Hi?", []), "no frames"),
    (lambda f, s: (f[:1] + [np.zeros((H + 1, W, 3), np.uint8)], s[:2], "Hi?", []), "frames differ in size"),
    (lambda f, s: (f, s, "What is [0] and [2]?", [PointPrompt(object_index=2, frame_index=0, x=1, y=1)]),
     r"names \[0\] but no prompt"),
    (lambda f, s: (f, s, "What is [0]?", [PointPrompt(object_index=0, frame_index=0, x=1, y=1),
                                          PointPrompt(object_index=0, frame_index=1, x=2, y=2)]),
     r"two prompts for \[0\]"),
    (lambda f, s: (f, s, "What is [0]?", [BoxPrompt(object_index=0, frame_index=0, x0=1, y0=1, x1=W + 5, y1=9)]),
     "outside the"),
    (lambda f, s: (f, s, "What is [0]?", [BoxPrompt(object_index=0, frame_index=0, x0=4, y0=1, x1=4, y1=9)]),
     "zero area"),
    (lambda f, s: (f, s, "What is [0]?", [PointPrompt(object_index=0, frame_index=0, x=float("nan"), y=1)]),
     "NaN"),
    (lambda f, s: (f, s, "  ", []), "empty request"),
    (lambda f, s: (f, s, "What is [0]?", [MemoryPrompt(object_index=0, memory_id=7)]), "no object 7 in memory"),
])
def test_bad_requests_raise_a_clear_error(pipeline, make, message) -> None:
    frames, stamps = video(3)
    args = make(frames, stamps)
    with pytest.raises(PromptError, match=message):
        pipeline.query(*args, memory=ObjectMemoryBank())


def test_onnxruntime_decoder_is_exported_on_request_and_agrees_with_torch(pipeline, tmp_path) -> None:
    notes: list[str] = []
    fallback = build_pipeline("tiny", device="cpu", decoder_backend="onnxruntime", decoder_dir=tmp_path,
                              log=notes.append)
    assert type(fallback.engine.decoder).__name__ == "TorchMaskDecoder"
    assert any("set rebuild" in n for n in notes)

    ort = build_pipeline("tiny", device="cpu", decoder_backend="onnxruntime", decoder_dir=tmp_path,
                         rebuild_decoder=True, log=notes.append)
    assert type(ort.engine.decoder).__name__ == "OnnxRuntimeMaskDecoder"
    assert (tmp_path / "mask_decoder_fp32.onnx").is_file()
    frames, stamps = video(3, seed=4)
    click = PointPrompt(object_index=0, frame_index=2, x=20, y=12)
    a = ort.segment_prompt(frames, stamps, click).masks
    b = pipeline.segment_prompt(frames, stamps, click).masks
    # fp32 graph: logits agree to ~1e-5, so only pixels with |logit| ~ 0 may flip
    assert (a ^ b).sum() <= 0.001 * a.size


# ---------------------------------------------------------------- mask prompts are objects like points and boxes

def _drawn_mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[6:22, 8:30] = True
    return mask


def test_mask_prompted_object_is_returned_and_kept(pipeline, scripted) -> None:
    scripted("a")
    frames, stamps = video(3)
    memory = ObjectMemoryBank()
    drawn = _drawn_mask()
    result = pipeline.query(frames, stamps, "What colour is [0]?", [MaskPrompt(object_index=0, frame_index=1, mask=drawn)],
                            memory=memory, remember=True)
    (obj,) = result.objects
    assert (obj.object_index, obj.label) == (0, "[0]")
    assert obj.masks.shape == (3, H, W) and obj.scores.shape == (3,)
    np.testing.assert_array_equal(obj.masks[1], drawn)          # the drawn mask itself on its frame
    assert obj.memory_id == 1 and memory.get(1).stamps == tuple(stamps)
    np.testing.assert_array_equal(np.stack(memory.get(1).masks), obj.masks)
    assert memory.tracking(1) is obj.tracking is not None
    tracked = pipeline.track(memory, video(1, seed=8)[0][0], stamps[-1] + 100_000_000)
    assert set(tracked) == {1} and memory.get(1).stamps[-1] == stamps[-1] + 100_000_000


def test_mask_and_point_objects_come_in_order_of_mention(pipeline, scripted) -> None:
    scripted("a")
    frames, stamps = video(3)
    prompts = [PointPrompt(object_index=0, frame_index=0, x=10, y=20),
               MaskPrompt(object_index=1, frame_index=2, mask=_drawn_mask())]
    result = pipeline.query(frames, stamps, "Is [1] left of [0]?", prompts)
    assert [(o.object_index, o.label) for o in result.objects] == [(1, "[1]"), (0, "[0]")]
    np.testing.assert_array_equal(result.objects[0].masks[2], _drawn_mask())


# ---------------------------------------------------------------- the texts the model reads

def _seen_texts(pipeline, monkeypatch) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"prefill": [], "generate": []}
    decode = pipeline.processor.tokenizer.decode
    real_prefill, real_generate = pipeline.model.prompt_seg_tokens, pipeline.model.generate_greedy

    def prefill(inputs):
        seen["prefill"].append(decode(inputs.input_ids[0]))
        return real_prefill(inputs)

    def generate(inputs, **kwargs):
        seen["generate"].append(decode(inputs.input_ids[0]))
        return real_generate(inputs, **kwargs)

    monkeypatch.setattr(pipeline.model, "prompt_seg_tokens", prefill)
    monkeypatch.setattr(pipeline.model, "generate_greedy", generate)
    return seen


def test_memory_prefix_counts_the_sampled_frames_of_an_odd_window(pipeline, scripted, monkeypatch) -> None:
    seen = _seen_texts(pipeline, monkeypatch)
    scripted("a")
    frames, stamps = video(5)
    pipeline.query(frames, stamps, "What colour is [0]?", [MaskPrompt(object_index=0, frame_index=4, mask=_drawn_mask())])
    assert ("Here is a video with 5 frames denoted as <1> to <5>. The highlighted regions are as follows:\n"
            "[0]: <5>-<6> <|mem|>\nWhat colour is [0]?<|im_end|>") in seen["generate"][0]


def test_memory_prefix_of_a_single_image_is_the_image_form(pipeline, scripted, monkeypatch) -> None:
    seen = _seen_texts(pipeline, monkeypatch)
    scripted("a")
    frames, stamps = video(1)
    pipeline.query(frames, stamps, "What is [0]?", [PointPrompt(object_index=0, frame_index=0, x=12, y=9)])
    assert ("Here is an image with the following highlighted regions:\n[0]: <|mem|>\nWhat is [0]?<|im_end|>"
            in seen["generate"][0])
    assert "Here is a video" not in seen["generate"][0]


@pytest.mark.parametrize("text, expected", [
    ("Describe [0]", "Describe [0] <|ref|>. Please localize the relevant objects with IDs."),
    ("What is [0]?", "What is [0] <|ref|>? Please localize the relevant objects with IDs."),
    ("", "[0] <|ref|>. Please localize the relevant objects with IDs."),
])
def test_prefill_pass_question_ends_in_a_sentence_mark(pipeline, scripted, monkeypatch, text, expected) -> None:
    seen = _seen_texts(pipeline, monkeypatch)
    scripted("a")
    frames, stamps = video(2)
    pipeline.query(frames, stamps, text, [PointPrompt(object_index=0, frame_index=1, x=12, y=9)])
    assert f"{expected}<|im_end|>\n<|im_start|>assistant\n[0] <|seg|><|im_end|>" in seen["prefill"][0]


# ---------------------------------------------------------------- request size and numeric range

@pytest.fixture()
def no_model_work(pipeline, monkeypatch):
    """Fail the test if the request reaches the language model or SAM 2."""
    def refuse(*args, **kwargs):
        raise AssertionError("the request reached the model")

    for name in ("generate_greedy", "prompt_seg_tokens"):
        monkeypatch.setattr(pipeline.model, name, refuse)
    for name in ("features", "segment_seg_tokens", "segment_mask"):
        monkeypatch.setattr(pipeline.engine, name, refuse)


def test_too_many_prompts_are_refused_before_any_model_work(pipeline, no_model_work) -> None:
    frames, stamps = video(3)
    prompts = [PointPrompt(object_index=k, frame_index=0, x=1 + k, y=1) for k in range(17)]
    text = " ".join(f"[{k}]" for k in range(17))
    with pytest.raises(PromptError, match=r"17 visual prompts in one request; at most 16 are allowed "
                                          r"\(query.max_prompts\)"):
        pipeline.query(frames, stamps, text, prompts)
    with pytest.raises(PromptError, match=r"at most 2 are allowed \(query.max_prompts\)"):
        pipeline.query(frames, stamps, text, prompts[:3], limits=RequestLimits(max_prompts=2))


def test_text_longer_than_the_token_limit_is_refused_before_any_model_work(pipeline, no_model_work) -> None:
    frames, stamps = video(3)
    text = "Where is the cup? " * 100                    # the tiny tokenizer is byte-level: 1800 tokens
    assert pipeline.count_tokens(text) == 1800
    with pytest.raises(PromptError, match=r"the text is 1800 tokens long; at most 1024 are allowed "
                                          r"\(query.max_text_tokens\)"):
        pipeline.query(frames, stamps, text)
    with pytest.raises(PromptError, match=r"the text is 9 tokens long; at most 8 are allowed"):
        pipeline.query(frames, stamps, "Where is?", limits=RequestLimits(max_text_tokens=8))


def test_mask_pixels_beyond_the_limit_are_refused_before_any_model_work(pipeline, no_model_work) -> None:
    frames, stamps = video(3)
    prompts = [MaskPrompt(object_index=k, frame_index=k, mask=_drawn_mask()) for k in range(2)]
    with pytest.raises(PromptError, match=rf"the mask prompts hold {2 * H * W} pixels; at most {H * W} per request "
                                          r"are allowed \(query.max_prompt_pixels\)"):
        pipeline.query(frames, stamps, "[0] [1]", prompts, limits=RequestLimits(max_prompt_pixels=H * W))


@pytest.mark.parametrize("prompt, message", [
    (PointPrompt(object_index=0, frame_index=1.0, x=3, y=3), "frame index must be an integer"),
    (PointPrompt(object_index=0, frame_index=0, x=3e38, y=3), "is outside the 56x40 image"),
    (BoxPrompt(object_index=0, frame_index=0, x0=0, y0=0, x1=1e300, y1=3), "is outside the 56x40 image"),
    (MemoryPrompt(object_index=0, memory_id=2**64), f"no object {2**64} in memory"),
    (MaskPrompt(object_index=0, frame_index=2**40, mask=np.ones((H, W), bool)), "is outside the window of 3"),
])
def test_out_of_range_fields_are_refused_before_any_model_work(pipeline, no_model_work, prompt, message) -> None:
    frames, stamps = video(3)
    with pytest.raises(PromptError, match=message):
        pipeline.query(frames, stamps, "What is [0]?", [prompt], memory=ObjectMemoryBank())


def test_a_request_leaves_no_tensors_behind(pipeline, scripted) -> None:
    import gc

    def live_tensors() -> int:
        gc.collect()
        return sum(isinstance(o, torch.Tensor) and not isinstance(o, nn.Parameter) for o in gc.get_objects())

    frames, stamps = video(3, seed=21)
    prompts = [PointPrompt(object_index=0, frame_index=0, x=10, y=20), BoxPrompt(object_index=1, frame_index=1,
               x0=2, y0=3, x1=30, y1=35), MaskPrompt(object_index=2, frame_index=2, mask=_drawn_mask())]
    counts = []
    for _ in range(3):
        scripted("a", "<|seg|>")           # pass 1 reads the head once, then the answer has one <|seg|>
        result = pipeline.query(frames, stamps, "Are [0], [1] and [2] near the cup?", prompts)
        assert len(result.objects) == 4
        del result
        counts.append(live_tensors())
    assert counts[1] == counts[2] == counts[0], counts     # features are cached at the first; nothing grows


def test_the_heap_a_request_freed_goes_back_to_the_system(pipeline, scripted, monkeypatch) -> None:
    import unipixel_ros.pipeline as pipeline_module

    trims: list[int] = []
    monkeypatch.setattr(pipeline_module, "_MALLOC_TRIM", trims.append)
    frames, stamps = video(2)
    scripted("a")
    pipeline.query(frames, stamps, "Describe.")
    with pytest.raises(PromptError):
        pipeline.query(frames, stamps, "  ")
    assert trims == [0, 0]


def test_name_objects_names_each_seg_token_after_the_prompted_objects() -> None:
    assert name_objects("Sure, it is <|seg|>.") == "Sure, it is [obj 1]."
    assert name_objects("<|seg|> and <|seg|>", first=2) == "[obj 3] and [obj 4]"
    assert name_objects("  A  red circle. ") == "A red circle."


def test_the_answer_names_the_objects_it_returned(pipeline, scripted) -> None:
    frames, stamps = video(3, seed=5)
    scripted("<|seg|>", ",", "<|seg|>")
    result = pipeline.query(frames, stamps, "Please segment the red circle and the blue square.")
    assert result.answer == "[obj 1], [obj 2]" and len(result.objects) == 2
    prompts = [PointPrompt(object_index=0, frame_index=0, x=10, y=20)]
    scripted("a", "<|seg|>")              # pass 1 reads the head once, then the answer has one <|seg|>
    result = pipeline.query(frames, stamps, "Segment what is next to [0].", prompts)
    assert [o.label for o in result.objects][0] == "[0]" and len(result.objects) == 2
    assert result.answer == "[obj 2]"     # the answer's object comes after the prompted one
