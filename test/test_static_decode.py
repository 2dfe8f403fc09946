"""Static-cache and compiled greedy decoding give what the eager (DynamicCache) decode gives."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from unipixel_ros.model.chat import chat_text, encode_request
from unipixel_ros.model.inputs import ModelInputError, ReferenceInput
from unipixel_ros.model.static_decode import CACHE_BUCKET, StaticDecoder, bucketed_length
from unipixel_ros.model.tiny import TINY_FRAME_SIZE, build_tiny_unipixel
from unipixel_ros.prompts import MEM_TOKEN, REF_TOKEN, SEG_TOKEN

torch.set_num_threads(1)
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def tiny():
    """A tiny UniPixel whose greedy answers hold several <SEG>s: the SEG row of its tied
    embedding is scaled up, so its logit often wins (the same model for every decode)."""
    model, processor = build_tiny_unipixel(seed=1)
    with torch.no_grad():
        model.get_input_embeddings().weight[model.config.seg_token_id] *= 4
    return model, processor


def frames(count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, TINY_FRAME_SIZE, TINY_FRAME_SIZE, 3), dtype=np.uint8)


def requests(processor):
    """Inputs without visual prompts, with point and box prompts and a prompt-side <SEG>, and with a
    mask prompt (<|mem|>)."""
    plain = encode_request(processor, chat_text("Describe the scene."), frames())
    prompted = encode_request(
        processor, chat_text(f"Find [0] {REF_TOKEN} and [1] {REF_TOKEN}.", response=f"[0] {SEG_TOKEN}"),
        frames(seed=1), references=[ReferenceInput.point(30.0, 40.0, 1), ReferenceInput.box(5, 8, 50, 44, 3)])
    masks = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    masks[:, 0, 0, 1] = True
    remembered = encode_request(processor, chat_text(f"Where is [0] {MEM_TOKEN} {MEM_TOKEN} now?"),
                                frames(seed=2), region_masks=masks)
    return {"plain": plain, "prompted": prompted, "mask": remembered}


def assert_same_answer(got, expected, seg_token_id):
    assert got.token_ids == expected.token_ids
    assert got.finished == expected.finished and got.prompt_seg_count == expected.prompt_seg_count
    assert got.seg_tokens.shape == expected.seg_tokens.shape
    torch.testing.assert_close(got.seg_tokens, expected.seg_tokens, rtol=1e-4, atol=1e-4)
    assert expected.token_ids.count(seg_token_id) >= 1


@pytest.mark.parametrize("kind", ["plain", "prompted", "mask"])
def test_static_cache_decode_equals_eager(tiny, kind):
    model, processor = tiny
    inputs = requests(processor)[kind]
    eager = model.generate_greedy(inputs, max_new_tokens=NEW_TOKENS, eos_token_ids=[])
    static = model.generate_greedy(inputs, max_new_tokens=NEW_TOKENS, eos_token_ids=[], decode="static")
    assert_same_answer(static, eager, model.config.seg_token_id)
    assert static.prompt_seg_count == (1 if kind == "prompted" else 0)


def test_static_cache_is_reused_across_requests_without_their_keys(tiny):
    model, processor = tiny
    decoder = StaticDecoder(model)
    first, second = requests(processor)["prompted"], requests(processor)["plain"]
    expected = model.generate_greedy(second, max_new_tokens=NEW_TOKENS, eos_token_ids=[])
    model.generate_greedy(first, max_new_tokens=NEW_TOKENS, eos_token_ids=[], decode=decoder)
    cache = decoder.cache
    got = model.generate_greedy(second, max_new_tokens=NEW_TOKENS, eos_token_ids=[], decode=decoder)
    assert decoder.cache is cache and decoder.cache.layers[0].max_cache_len == CACHE_BUCKET
    assert_same_answer(got, expected, model.config.seg_token_id)


def test_decode_steps_stop_like_eager(tiny):
    model, processor = tiny
    inputs = requests(processor)["plain"]
    seen = []
    stopped = model.generate_greedy(inputs, max_new_tokens=10, eos_token_ids=[], decode="static",
                                    on_token=lambda t: seen.append(t) or len(seen) < 3)
    eager = model.generate_greedy(inputs, max_new_tokens=10, eos_token_ids=[])
    assert stopped.token_ids == seen == eager.token_ids[:3]
    with pytest.raises(ModelInputError, match="decode must be one of"):
        model.generate_greedy(inputs, decode="cudagraph")


def test_cache_length_is_bucketed():
    assert bucketed_length(1) == bucketed_length(CACHE_BUCKET) == CACHE_BUCKET
    assert bucketed_length(CACHE_BUCKET + 1) == 2 * CACHE_BUCKET


def _compile_skip_reason() -> str | None:
    try:
        torch.compile(lambda x: x + 1, backend="aot_eager", fullgraph=True)(torch.zeros(1))
    except Exception as error:  # noqa: BLE001 - whatever stops dynamo here is the reason to skip
        return f"torch.compile does not run here: {type(error).__name__}: {error}"
    return None


COMPILE_SKIP = _compile_skip_reason()


@pytest.mark.skipif(COMPILE_SKIP is not None, reason=str(COMPILE_SKIP))
def test_compiled_step_is_one_graph_and_decodes_like_eager(tiny):
    """Dynamo captures the whole decode step (fullgraph: a graph break raises) and the captured
    graph, run by aot_eager (no C compiler, seconds), gives the eager answers."""
    model, processor = tiny
    torch._dynamo.reset()
    decoder = StaticDecoder(model, compile_step=True, backend="aot_eager", fullgraph=True)
    for kind, inputs in requests(processor).items():
        eager = model.generate_greedy(inputs, max_new_tokens=NEW_TOKENS, eos_token_ids=[])
        compiled = model.generate_greedy(inputs, max_new_tokens=NEW_TOKENS, eos_token_ids=[], decode=decoder)
        assert decoder.compile_error is None and decoder.compile_step, kind
        assert_same_answer(compiled, eager, model.config.seg_token_id)


INDUCTOR_SKIP = COMPILE_SKIP or (None if shutil.which("cc") or shutil.which("gcc")
                                 else "inductor on the CPU needs a C compiler (no cc or gcc on PATH)")


@pytest.mark.slow
@pytest.mark.skipif(INDUCTOR_SKIP is not None, reason=str(INDUCTOR_SKIP))
def test_inductor_compiled_decode_equals_eager(tiny):
    """What model.compile runs: the inductor build (about a minute on two CPU cores)."""
    model, processor = tiny
    inputs = requests(processor)["prompted"]
    decoder = StaticDecoder(model, compile_step=True)
    eager = model.generate_greedy(inputs, max_new_tokens=NEW_TOKENS, eos_token_ids=[])
    compiled = model.generate_greedy(inputs, max_new_tokens=NEW_TOKENS, eos_token_ids=[], decode=decoder)
    assert decoder.compile_error is None and decoder.compile_step
    assert_same_answer(compiled, eager, model.config.seg_token_id)


@pytest.mark.parametrize("compile_decode, decode", [(False, "eager"), (True, "compiled")])
def test_model_compile_setting_picks_the_pipelines_decode(compile_decode, decode):
    from unipixel_ros.ros.model_host import ModelSettings, load_pipeline

    settings = ModelSettings(model_id="tiny", device="cpu", dtype="auto", decoder_backend="torch",
                             compile=compile_decode)
    assert load_pipeline(settings, log=lambda message: None).decode == decode
