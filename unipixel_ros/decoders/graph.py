"""SAM 2's mask decoder as one self-contained module: the part every backend runs.

``MaskDecoderGraph`` computes what ``SAM2Base._forward_sam_heads`` computes for the
multimask case without a mask prompt (the only case UniPixel uses: the seed frame
gets the ``<SEG>`` tokens, tracked frames only the padding point), from
``DecoderInputs`` to ``DecoderOutputs``. It reuses the SAM 2 model's own submodules
(no weight copies), and is written so that the same module exports to an ONNX graph
TensorRT accepts:

- the positional encoding is broadcast with ``expand`` (sam2 uses
  ``repeat_interleave``, which exports as Tile/OneHot-style index arithmetic);
- the high-resolution features are shared by all objects and broadcast, never copied;
- the best of the three masks is picked with ArgMax + GatherElements (static shapes);
- only the three multimask hypernetworks run (the single-mask output is unused).

Upsampling to the SAM input size stays outside (``upsample_masks``): the consumers
want different sizes (the memory encoder wants ``image_size``, the user wants the
camera resolution) and an in-graph upsample would move 16x more data per object.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE  # mask logit sam2 gives absent objects
from torch import nn

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs


class DecoderShapeError(ValueError):
    """Decoder inputs whose shapes do not fit the SAM 2 model they are meant for."""


class UnsupportedSam2Config(ValueError):
    """A SAM 2 configuration the exported decoder does not reproduce."""


@dataclass(frozen=True)
class DecoderShapes:
    """Tensor sizes of one SAM 2 model's mask decoder, read from the model, never assumed."""

    embed_dim: int  # C, channels of image embedding and prompt tokens
    embed_size: int  # H = W of the image embedding (image_size / backbone stride)
    s0_channels: int  # channels of the stride-4 high-resolution features
    s1_channels: int  # channels of the stride-8 high-resolution features
    image_size: int  # SAM input side length in pixels

    @property
    def s0_size(self) -> int:
        return 4 * self.embed_size

    @property
    def s1_size(self) -> int:
        return 2 * self.embed_size

    @property
    def mask_size(self) -> int:
        """Side of the low-resolution mask logits (same grid as ``feat_s0``)."""
        return 4 * self.embed_size

    @classmethod
    def from_sam2(cls, sam2: nn.Module) -> "DecoderShapes":
        decoder = sam2.sam_mask_decoder
        return cls(
            embed_dim=int(sam2.sam_prompt_embed_dim),
            embed_size=int(sam2.sam_image_embedding_size),
            s0_channels=int(decoder.conv_s0.out_channels),
            s1_channels=int(decoder.conv_s1.out_channels),
            image_size=int(sam2.image_size),
        )

    def check(self, inputs: DecoderInputs) -> int:
        """Raise ``DecoderShapeError`` naming the first mismatching input; return K."""
        k = int(inputs.image_embed.shape[0]) if inputs.image_embed.dim() == 4 else -1
        c, h = self.embed_dim, self.embed_size
        expected = {
            "image_embed": (k, c, h, h),
            "feat_s0": (1, self.s0_channels, self.s0_size, self.s0_size),
            "feat_s1": (1, self.s1_channels, self.s1_size, self.s1_size),
        }
        for name, shape in expected.items():
            got = tuple(getattr(inputs, name).shape)
            if got != shape or k < 1:
                raise DecoderShapeError(f"{name} has shape {got}, expected {shape}")
        sparse = tuple(inputs.sparse.shape)
        if len(sparse) != 3 or sparse[0] != k or sparse[2] != c or sparse[1] < 1:
            raise DecoderShapeError(f"sparse has shape {sparse}, expected ({k}, P>=1, {c})")
        return k


def check_supported(sam2: nn.Module) -> None:
    """Refuse SAM 2 variants whose decoder call differs from the one reproduced here."""
    needed = {
        "use_high_res_features_in_sam": True,
        "pred_obj_scores": True,
        "use_multimask_token_for_obj_ptr": True,
    }
    for attr, value in needed.items():
        if bool(getattr(sam2, attr, None)) is not value:
            raise UnsupportedSam2Config(f"SAM 2 model has {attr}={getattr(sam2, attr, None)}; "
                                        f"the mask decoder graph needs {attr}={value}")
    if sam2.sam_mask_decoder.num_mask_tokens != 4:
        raise UnsupportedSam2Config("SAM 2 mask decoder must have 1 + 3 mask tokens, "
                                    f"has {sam2.sam_mask_decoder.num_mask_tokens}")


def padding_prompt(sam2: nn.Module, num_objects: int) -> torch.Tensor:
    """The sparse prompt of a frame without clicks: what sam2 embeds for 'no point'.

    sam2 pads an absent point prompt with one label -1 point and its prompt encoder
    appends another (no box given), so this is [K, 2, C], both rows the learned
    not-a-point embedding. Computed by sam2's own prompt encoder so it stays exact.
    """
    encoder = sam2.sam_prompt_encoder
    device = encoder.not_a_point_embed.weight.device
    coords = torch.zeros(num_objects, 1, 2, device=device)
    labels = -torch.ones(num_objects, 1, dtype=torch.int32, device=device)
    sparse, _ = encoder(points=(coords, labels), boxes=None, masks=None)
    return sparse


def seed_prompt(sam2: nn.Module, seg_tokens: torch.Tensor) -> torch.Tensor:
    """Sparse prompt of UniPixel's seed frame: the padding rows, then the ``<SEG>`` tokens.

    ``seg_tokens`` is [K, S, C] (S = ``sam2_hidden_tokens`` = 2 in the published
    checkpoints), the seg head's output reshaped per token. Returns [K, 2 + S, C].
    """
    if seg_tokens.dim() != 3 or seg_tokens.shape[-1] != sam2.sam_prompt_embed_dim:
        raise DecoderShapeError(f"seg_tokens has shape {tuple(seg_tokens.shape)}, "
                                f"expected (K, S, {sam2.sam_prompt_embed_dim})")
    pad = padding_prompt(sam2, seg_tokens.shape[0])
    return torch.cat([pad, seg_tokens.to(pad.dtype)], dim=1)


class MaskDecoderGraph(nn.Module):
    """DecoderInputs tensors -> DecoderOutputs tensors with a SAM 2 model's decoder weights.

    ``forward`` takes and returns plain tensors (in ``DecoderInputs`` / ``DecoderOutputs``
    field order) so the module exports to ONNX as is.
    """

    def __init__(self, sam2: nn.Module):
        super().__init__()
        check_supported(sam2)
        self.shapes = DecoderShapes.from_sam2(sam2)
        self.decoder = sam2.sam_mask_decoder
        self.prompt_encoder = sam2.sam_prompt_encoder

    def forward(self, image_embed: torch.Tensor, feat_s0: torch.Tensor, feat_s1: torch.Tensor,
                sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dec = self.decoder
        k = image_embed.shape[0]
        output_tokens = torch.cat(
            [dec.obj_score_token.weight, dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(k, -1, -1), sparse], dim=1)

        # No mask prompt: the dense prompt is the learned no-mask embedding everywhere.
        src = image_embed + self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        image_pe = self.prompt_encoder.get_dense_pe().to(src.dtype)
        hs, src = dec.transformer(src, image_pe.expand(k, -1, -1, -1), tokens)

        # Token order: object score, IoU, 1 single-mask token, 3 multimask tokens.
        b, c, h, w = image_embed.shape
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = dec.output_upscaling
        upscaled = act1(ln1(dc1(src) + feat_s1))
        upscaled = act2(dc2(upscaled) + feat_s0)
        multimask_tokens = hs[:, 3:6, :]
        hyper_in = torch.stack(
            [dec.output_hypernetworks_mlps[i + 1](multimask_tokens[:, i, :]) for i in range(3)], dim=1)
        _, uc, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, uc, uh * uw)).reshape(b, 3, uh, uw)
        ious = dec.iou_prediction_head(hs[:, 1, :])[:, 1:]
        object_score = dec.pred_obj_score_head(hs[:, 0, :])

        best = torch.argmax(ious, dim=-1, keepdim=True)  # [K, 1]
        best_mask = torch.gather(masks, 1, best[:, :, None, None].expand(-1, -1, uh, uw))
        best_iou = torch.gather(ious, 1, best)
        best_token = torch.gather(multimask_tokens, 1, best[:, :, None].expand(-1, -1, c))[:, 0]
        # Absent objects get a hard "no object" mask, as sam2 does before memory encoding.
        best_mask = torch.where(object_score[:, :, None, None] > 0, best_mask,
                                torch.full_like(best_mask, NO_OBJ_SCORE))
        return best_mask.float(), best_iou, best_token, object_score


def upsample_masks(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Low-resolution logits -> ``size``, the bilinear resize sam2 applies to its masks."""
    return F.interpolate(masks.float(), size=size, mode="bilinear", align_corners=False)


def run_graph(graph: MaskDecoderGraph, inputs: DecoderInputs) -> DecoderOutputs:
    """Run the graph on checked inputs and wrap the result."""
    graph.shapes.check(inputs)
    masks, iou, tokens, score = graph(inputs.image_embed, inputs.feat_s0, inputs.feat_s1, inputs.sparse)
    return DecoderOutputs(masks=masks, iou=iou, tokens=tokens, object_score=score)
