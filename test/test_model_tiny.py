"""UniPixel model behaviour on the tiny random model: prompt encoding, memory pooling,
``<SEG>`` tokens from pre-norm hidden states, greedy decoding, and no per-request state."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from unipixel_ros.model.chat import chat_text, encode_request
from unipixel_ros.model.inputs import ModelInputError, ReferenceInput, UniPixelInputs
from unipixel_ros.model.tiny import TINY_FRAME_SIZE, build_tiny_unipixel
from unipixel_ros.prompts import MEM_TOKEN, REF_TOKEN, SEG_TOKEN
from unipixel_ros.regions import merged_window_index

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_unipixel(seed=0)


def frames(count=4, height=TINY_FRAME_SIZE, width=TINY_FRAME_SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def pre_norm_hidden(model, inputs):
    """Last decoder layer output over the whole sequence, captured at the layer (not at the norm)."""
    captured = []
    handle = model.model.language_model.layers[-1].register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        with torch.inference_mode():
            positions, _ = model.position_ids(inputs)
            out = model.model.language_model(inputs_embeds=model.embed_inputs(inputs), position_ids=positions)
    finally:
        handle.remove()
    hidden = captured[0][0] if isinstance(captured[0], tuple) else captured[0]
    return hidden[0], out.last_hidden_state[0]


def test_point_and_box_tokens_match_sams_prompt_encoder(tiny):
    model, _ = tiny
    for reference in (ReferenceInput.point(10.25, 200.5, 0), ReferenceInput.box(3, 17, 140, 251, 0)):
        with torch.inference_mode():
            ours = model._prompt_tokens(reference)
            sams, _ = model.ref_encoder((reference.coords[None].float(), reference.labels[None]), None, None)
        assert ours.shape == (1, len(reference.labels) + 1, 256)
        torch.testing.assert_close(ours, sams, rtol=0, atol=1e-6)


def test_prompt_tokens_in_bfloat16_use_float32_fourier_features():
    """With bf16 weights the Fourier features are still computed in float32 (from the
    bf16-stored frequencies): the result matches a float32 model holding the same values."""
    model, _ = build_tiny_unipixel(seed=0)
    reference = ReferenceInput.box(3, 17, 140, 251, 0)
    with torch.inference_mode():
        model.ref_encoder.to(torch.bfloat16)
        half = model._prompt_tokens(reference)
        model.ref_encoder.to(torch.float32)
        full = model._prompt_tokens(reference)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=1e-2, atol=1e-2)


def test_temporal_encoding_is_random_fourier_of_the_normalised_position(tiny):
    model, _ = tiny
    gaussian = model.tem_pe.positional_encoding_gaussian_matrix[0].double().numpy()
    for position in (0.0, 1 / 3, 1.0):
        angles = 2 * math.pi * (2 * position - 1) * gaussian
        expected = np.concatenate([np.sin(angles), np.cos(angles)])
        got = model.tem_pe(torch.tensor([position]))[0].double().numpy()
        np.testing.assert_allclose(got, expected, atol=2e-5)


def test_reference_embedding_combines_geometry_and_frame_position(tiny):
    model, _ = tiny
    grid = torch.tensor([[2, 4, 4]])  # two frame pairs: 4 frames, positions k / 3
    point, box = ReferenceInput.point(5.0, 9.0, 1), ReferenceInput.box(0, 0, 99, 50, 3)
    with torch.inference_mode():
        got = model.reference_embeddings([point, box], grid)
        expected = []
        for reference, project, position in ((point, model.ref_proj_single, 1 / 3),
                                             (box, model.ref_proj_double, 1.0)):
            spatial = project(model._prompt_tokens(reference).flatten(1))
            temporal = model.tem_proj(model.tem_pe(torch.tensor([position])) + model.tem_emb.weight)
            expected.append(model.ref_proj(torch.cat([spatial, temporal], dim=1)))
    torch.testing.assert_close(got, torch.cat(expected), rtol=1e-4, atol=1e-4)
    with pytest.raises(ModelInputError, match="frame"):
        model.reference_embeddings([ReferenceInput.point(5.0, 9.0, 4)], grid)


def test_merger_inputs_are_what_the_merger_mlp_reads(tiny):
    model, processor = tiny
    inputs = encode_request(processor, chat_text("hi"), frames(2, 56, 252))
    seen = []
    handle = model.model.visual.merger.mlp.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.inference_mode():
            features = model.video_features(inputs.pixel_values_videos, inputs.video_grid_thw)
    finally:
        handle.remove()
    assert torch.equal(features.merger_inputs, seen[0])
    assert features.embeds.shape == (2 * 9, 64)


def test_memory_pooling_lays_row_order_masks_over_window_order_features(tiny):
    model, processor = tiny
    inputs = encode_request(processor, chat_text("hi"), frames(2, 56, 252))
    grid = tuple(int(v) for v in inputs.video_grid_thw[0])  # (1, 4, 18): merged 2 x 9, windows 4 wide
    order = merged_window_index(grid)
    row = next(r for r in range(18) if int(order[r]) != r)
    masks = torch.zeros(1, 1, 2, 9, dtype=torch.bool)
    masks.view(-1)[row] = True
    with torch.inference_mode():
        features = model.video_features(inputs.pixel_values_videos, inputs.video_grid_thw).merger_inputs
        got = model.memory_embeddings(features, masks, inputs.video_grid_thw)
        trained = model.msk_proj(features[row:row + 1])
        raster = model.msk_proj(features[torch.argsort(order)][row:row + 1])
    torch.testing.assert_close(got, trained, rtol=0, atol=0)
    assert not torch.allclose(got, raster)


def test_seg_tokens_for_prompt_seg_come_from_pre_norm_state_before_each_seg(tiny):
    model, processor = tiny
    text = chat_text(f"Find [0] {REF_TOKEN} and [1].", response=f"[0] {SEG_TOKEN} [1] {SEG_TOKEN}")
    inputs = encode_request(processor, text, frames(), references=[ReferenceInput.point(30.0, 40.0, 2)])
    tokens = model.prompt_seg_tokens(inputs)
    hidden, post_norm = pre_norm_hidden(model, inputs)
    ids = inputs.input_ids[0]
    before_seg = torch.nonzero(ids == model.config.seg_token_id).flatten() - 1
    with torch.inference_mode():
        expected = model.seg_head(hidden[before_seg]).view(2, 2, 256)
        from_post_norm = model.seg_head(post_norm[before_seg]).view(2, 2, 256)
    assert tokens.shape == (2, 2, 256)
    torch.testing.assert_close(tokens, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(tokens, from_post_norm, atol=1e-3)


class ForcedTokens(nn.Module):
    """Test double for ``lm_head``: on call ``i`` it makes ``schedule[i]`` the argmax."""

    def __init__(self, head: nn.Module, schedule: dict[int, int]) -> None:
        super().__init__()
        self.head, self.schedule, self.calls = head, schedule, 0

    def forward(self, hidden):
        logits = self.head(hidden)
        if self.calls in self.schedule:
            logits[..., self.schedule[self.calls]] += 1e4
        self.calls += 1
        return logits


def test_generated_seg_tokens_match_a_full_pass_over_the_answer():
    model, processor = build_tiny_unipixel(seed=1)
    seg, eos = model.config.seg_token_id, model.config.text_config.eos_token_id
    text = chat_text(f"Segment [0] {REF_TOKEN}.")
    inputs = encode_request(processor, text, frames(), references=[ReferenceInput.box(10, 10, 90, 120, 0)])
    model.lm_head = ForcedTokens(model.lm_head, {0: seg, 3: seg, 5: eos})
    out = model.generate_greedy(inputs, max_new_tokens=20)
    assert out.finished and out.prompt_seg_count == 0
    assert len(out.token_ids) == 5 and out.token_ids[0] == seg and out.token_ids[3] == seg
    assert out.seg_tokens.shape == (2, 2, 256)

    full_ids = torch.cat([inputs.input_ids[0], torch.tensor(out.token_ids)])[None]
    full = UniPixelInputs(input_ids=full_ids, pixel_values_videos=inputs.pixel_values_videos,
                          video_grid_thw=inputs.video_grid_thw, second_per_grid_ts=inputs.second_per_grid_ts,
                          references=inputs.references)
    hidden, _ = pre_norm_hidden(model, full)
    before_seg = torch.nonzero(full_ids[0] == seg).flatten() - 1
    with torch.inference_mode():
        expected = model.seg_head(hidden[before_seg]).view(2, 2, 256)
    torch.testing.assert_close(out.seg_tokens, expected, rtol=1e-3, atol=1e-4)


def test_generation_stops_at_max_new_tokens_and_on_request(tiny):
    model, processor = tiny
    inputs = encode_request(processor, chat_text("Describe."), frames())
    capped = model.generate_greedy(inputs, max_new_tokens=3, eos_token_ids=[])
    assert len(capped.token_ids) == 3 and not capped.finished
    seen = []
    stopped = model.generate_greedy(inputs, max_new_tokens=10, eos_token_ids=[],
                                    on_token=lambda t: seen.append(t) or len(seen) < 2)
    assert stopped.token_ids == seen == capped.token_ids[:2]


def test_requests_leave_no_state_on_the_module(tiny):
    model, processor = tiny
    first = encode_request(processor, chat_text(f"[0] {REF_TOKEN}?"), frames(seed=1),
                           references=[ReferenceInput.point(3.0, 4.0, 0)])
    second = encode_request(processor, chat_text("Other?"), frames(6, seed=2))
    attributes = set(vars(model))
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    a1 = model.generate_greedy(first, max_new_tokens=6, eos_token_ids=[])
    model.generate_greedy(second, max_new_tokens=6, eos_token_ids=[])
    a2 = model.generate_greedy(first, max_new_tokens=6, eos_token_ids=[])
    assert a1.token_ids == a2.token_ids
    assert set(vars(model)) == attributes
    assert model.model.rope_deltas is None
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()) == hooks


def test_token_and_prompt_counts_must_agree(tiny):
    model, processor = tiny
    video = frames()
    with pytest.raises(ModelInputError, match=r"1 <\|ref\|> token\(s\) but 0"):
        model.embed_inputs(encode_request(processor, chat_text(f"[0] {REF_TOKEN}"), video))
    with pytest.raises(ModelInputError, match=r"0 <\|ref\|> token\(s\) but 1"):
        model.embed_inputs(encode_request(processor, chat_text("[0]"), video,
                                          references=[ReferenceInput.point(1.0, 1.0, 0)]))
    with pytest.raises(ModelInputError, match=r"1 <\|mem\|> token\(s\) but 0"):
        model.embed_inputs(encode_request(processor, chat_text(f"[0]: <1>-<2> {MEM_TOKEN}"), video))
    two_regions = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    with pytest.raises(ModelInputError, match=r"1 <\|mem\|> token\(s\) but 2"):
        model.embed_inputs(encode_request(processor, chat_text(f"[0]: <1>-<2> {MEM_TOKEN}"), video,
                                          region_masks=two_regions))
    with pytest.raises(ModelInputError, match="region_masks must have shape"):
        model.embed_inputs(encode_request(processor, chat_text(MEM_TOKEN), video,
                                          region_masks=torch.ones(2, 1, 3, 3, dtype=torch.bool)))
    with pytest.raises(ModelInputError, match="no video"):
        model.embed_inputs(UniPixelInputs(input_ids=torch.tensor([[1, model.config.ref_token_id]])))


def test_reference_input_validation():
    with pytest.raises(ModelInputError, match="one point"):
        ReferenceInput(torch.zeros(1, 2), torch.tensor([0]), 0)
    with pytest.raises(ModelInputError, match="shape"):
        ReferenceInput(torch.zeros(1, 2), torch.tensor([2, 3]), 0)
    with pytest.raises(ModelInputError, match="frame_index"):
        ReferenceInput.point(1.0, 2.0, -1)
    assert ReferenceInput.box(1, 2, 3, 4, 0).coords.dtype == torch.int32
    assert ReferenceInput.point(1.5, 2.5, 0).coords.dtype == torch.float32


def test_reference_from_geometry_keeps_point_float_and_box_int():
    from unipixel_ros.geometry import box_to_sam, point_to_sam

    point = ReferenceInput.from_sam(point_to_sam(10.0, 20.0, 640, 480), 1)
    box = ReferenceInput.from_sam(box_to_sam(10.0, 20.0, 300.0, 400.0, 640, 480), 0)
    assert point.labels.tolist() == [1] and point.coords.dtype == torch.float32
    assert point.coords.tolist() == [[12.0, 32.0]]
    assert box.labels.tolist() == [2, 3] and box.coords.dtype == torch.int32
    assert box.coords.tolist() == [[12, 32], [360, 640]]
    with pytest.raises(ModelInputError, match="point"):
        ReferenceInput.from_sam(np.zeros(3), 0)
