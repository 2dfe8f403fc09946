"""MaskDecoderGraph reproduces sam2's own prompt encoder + mask decoder + best-mask choice."""
import pytest
import torch
import torch.nn.functional as F

from unipixel_ros.decoders.base import DecoderInputs
from unipixel_ros.decoders.graph import (DecoderShapeError, DecoderShapes, MaskDecoderGraph,
                                         UnsupportedSam2Config, padding_prompt, seed_prompt,
                                         upsample_masks)
from unipixel_ros.decoders.parity import random_inputs
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder
from unipixel_ros.model.sam2_source import tiny_sam2

IMAGE_SIZE = 128  # 8x8 embedding, 32x32 masks: small, and not UniPixel's 768


@pytest.fixture(scope="module")
def sam2():
    torch.set_num_threads(1)
    return tiny_sam2(IMAGE_SIZE)


def sam2_reference(sam2, inputs: DecoderInputs):
    """sam2's own modules called as SAM2Base._forward_sam_heads calls them (multimask)."""
    k = inputs.image_embed.shape[0]
    _, dense = sam2.sam_prompt_encoder(points=(torch.zeros(k, 1, 2), -torch.ones(k, 1, dtype=torch.int32)),
                                       boxes=None, masks=None)
    high_res = [inputs.feat_s0.expand(k, -1, -1, -1), inputs.feat_s1.expand(k, -1, -1, -1)]
    masks, ious, tokens, score = sam2.sam_mask_decoder(
        image_embeddings=inputs.image_embed, image_pe=sam2.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=inputs.sparse, dense_prompt_embeddings=dense,
        multimask_output=True, repeat_image=False, high_res_features=high_res)
    masks = torch.where(score[:, :, None, None] > 0, masks, -1024.0)
    best = ious.argmax(-1)
    rows = torch.arange(k)
    return masks[rows, best][:, None], ious[rows, best][:, None], tokens[rows, best], score


def test_shapes_come_from_the_model_config(sam2):
    shapes = DecoderShapes.from_sam2(sam2)
    assert (shapes.embed_dim, shapes.embed_size, shapes.mask_size) == (256, IMAGE_SIZE // 16, IMAGE_SIZE // 4)
    assert (shapes.s0_channels, shapes.s1_channels) == (32, 64)


def test_padding_prompt_is_two_not_a_point_rows(sam2):
    pad = padding_prompt(sam2, 3)
    assert pad.shape == (3, 2, 256)
    torch.testing.assert_close(pad, sam2.sam_prompt_encoder.not_a_point_embed.weight.expand(3, 2, -1),
                               rtol=0, atol=0)


def test_seed_prompt_appends_seg_tokens_after_padding(sam2):
    seg = torch.randn(2, 2, 256)
    sparse = seed_prompt(sam2, seg)
    assert sparse.shape == (2, 4, 256)
    assert torch.equal(sparse[:, 2:], seg)
    assert torch.equal(sparse[:, :2], padding_prompt(sam2, 2))


@pytest.mark.parametrize("k,seed,seg", [(1, 0, True), (3, 1, True), (3, 2, False), (8, 3, True)])
def test_graph_matches_sam2_decoder(sam2, k, seed, seg):
    inputs = random_inputs(sam2, k, seed, seg)
    with torch.no_grad():
        want_masks, want_iou, want_tokens, want_score = sam2_reference(sam2, inputs)
        out = TorchMaskDecoder(sam2)(inputs)
    assert out.masks.shape == (k, 1, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
    torch.testing.assert_close(out.masks, want_masks, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.iou, want_iou, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.tokens, want_tokens, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.object_score, want_score, rtol=1e-6, atol=1e-6)


def test_tracked_frame_matches_forward_sam_heads(sam2):
    """Without a point or mask prompt, sam2's own head function must give the same result."""
    k = 3
    inputs = random_inputs(sam2, k, seed=4, seed_frame=False)
    with torch.no_grad():
        heads = sam2._forward_sam_heads(
            inputs.image_embed, point_inputs=None, mask_inputs=None,
            high_res_features=[inputs.feat_s0.expand(k, -1, -1, -1), inputs.feat_s1.expand(k, -1, -1, -1)],
            multimask_output=True)
        out = TorchMaskDecoder(sam2)(inputs)
    _, _, _, low_res, high_res, obj_ptr, score = heads
    torch.testing.assert_close(out.masks, low_res, rtol=1e-5, atol=1e-5)
    # The output token is the one sam2 turns into the object pointer.
    present = score.sigmoid() if sam2.soft_no_obj_ptr else (score > 0).float()
    with torch.no_grad():
        ptr = sam2.obj_ptr_proj(out.tokens) * present + (1 - present) * sam2.no_obj_ptr
    torch.testing.assert_close(ptr, obj_ptr, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.object_score, score, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(upsample_masks(out.masks, IMAGE_SIZE), high_res, rtol=1e-5, atol=1e-5)


def test_absent_object_gets_no_object_logits(sam2):
    """Objects with a score <= 0 get sam2's hard 'no object' mask (every logit -1024)."""
    inputs = random_inputs(sam2, 2, seed=5, seed_frame=True)
    graph = MaskDecoderGraph(sam2)
    with torch.no_grad():
        bias = graph.decoder.pred_obj_score_head.layers[-1].bias
        saved = bias.clone()
        bias.fill_(-1e4)
        try:
            out = TorchMaskDecoder(sam2)(inputs)
        finally:
            bias.copy_(saved)
    assert (out.object_score < 0).all()
    assert torch.equal(out.masks, torch.full_like(out.masks, -1024.0))


def test_wrong_shapes_are_named(sam2):
    inputs = random_inputs(sam2, 2, seed=6, seed_frame=True)
    inputs.feat_s1 = F.pad(inputs.feat_s1, (0, 1))
    with pytest.raises(DecoderShapeError, match="feat_s1"):
        TorchMaskDecoder(sam2)(inputs)
    inputs = random_inputs(sam2, 2, seed=6, seed_frame=True)
    inputs.sparse = inputs.sparse[:1]
    with pytest.raises(DecoderShapeError, match="sparse"):
        TorchMaskDecoder(sam2)(inputs)


def test_unsupported_config_is_refused(sam2):
    sam2.use_multimask_token_for_obj_ptr = False
    try:
        with pytest.raises(UnsupportedSam2Config, match="use_multimask_token_for_obj_ptr"):
            MaskDecoderGraph(sam2)
    finally:
        sam2.use_multimask_token_for_obj_ptr = True
