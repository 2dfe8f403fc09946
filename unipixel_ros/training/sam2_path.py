"""SAM 2 with gradients: what :class:`Sam2Engine` runs at inference, step for step, for training.

The engine is inference-only (no autograd, best mask chosen inside the decoder
graph). Training needs the same computation with gradients and with every mask
hypothesis SAM 2 produced, since the mask losses pick the best-fitting one. This
module drives the same ``SAM2Base`` building blocks in the same order:

* every frame is encoded once (``forward_image``), the top level with its
  positional encoding and the two high-resolution levels kept;
* the seed frame is an initial conditioning frame prompted with a sparse prompt
  (the ``<SEG>`` seed of :func:`seed_prompt`, or a click / box from
  :meth:`Sam2Engine.click_prompt`);
* every other frame is memory-conditioned and prompted only with the padding
  point; frames after the seed are visited forward, then frames before it backward;
* after each frame the best hypothesis (by predicted IoU, absent objects filled
  with SAM 2's no-object logit) goes into the memory encoder, and the object pointer
  comes from its output token.

A batch holds B objects that share their frame count and seed frame; each keeps its
own memory (SAM 2 batches objects along its batch axis).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from torch import nn

from unipixel_ros.decoders.graph import padding_prompt
from unipixel_ros.geometry import sam_preprocess, upsample_mask_logits
from unipixel_ros.model.sam2_engine import object_pointer


class Sam2PathError(ValueError):
    """Frames, prompts or a seed frame that do not fit together."""


@dataclass
class FrameFeatures:
    """SAM 2 features of N frames (the engine's per-frame cache entries, batched)."""

    image_embed: torch.Tensor  # [N, C, h, w] top level (stride 16)
    image_pos: torch.Tensor    # [N, C, h, w] its positional encoding
    feat_s0: torch.Tensor      # [N, C/8, 4h, 4w]
    feat_s1: torch.Tensor      # [N, C/4, 2h, 2w]

    def select(self, index: torch.Tensor | list[int]) -> "FrameFeatures":
        """Rows ``index`` of every level (e.g. one frame of each object's clip)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.image_embed.device)
        return FrameFeatures(*(t.index_select(0, index) for t in
                               (self.image_embed, self.image_pos, self.feat_s0, self.feat_s1)))


@dataclass
class StepPrediction:
    """SAM 2's output for B objects on one frame."""

    logits: torch.Tensor         # [B, M, s, s] raw low-resolution logits of every hypothesis (M = 1 or 3)
    ious: torch.Tensor           # [B, M] predicted IoU of each hypothesis
    object_logits: torch.Tensor  # [B, 1] object-presence logit
    kept: torch.Tensor           # [B, 1, s, s] the mask SAM 2 keeps: best hypothesis, absent -> no-object logit


def encode_frames(sam2: nn.Module, frames: np.ndarray | torch.Tensor) -> FrameFeatures:
    """SAM 2 features of RGB uint8 frames [N, H, W, 3] (SAM's resize and normalisation included)."""
    device = next(sam2.parameters()).device
    batch = sam_preprocess(torch.as_tensor(np.asarray(frames)).to(device), int(sam2.image_size))
    out = sam2.forward_image(batch)
    fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
    return FrameFeatures(image_embed=fpn[-1], image_pos=pos[-1], feat_s0=fpn[-3], feat_s1=fpn[-2])


def _decode(sam2: nn.Module, pix_feat: torch.Tensor, feats: FrameFeatures, sparse: torch.Tensor,
            multimask: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM 2's mask decoder without a mask prompt: (logits, ious, output tokens, object logits)."""
    encoder = sam2.sam_prompt_encoder
    dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(pix_feat.shape[0], -1, *pix_feat.shape[-2:])
    return sam2.sam_mask_decoder(
        image_embeddings=pix_feat, image_pe=encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=False,
        high_res_features=[feats.feat_s0, feats.feat_s1])


def _step(sam2: nn.Module, memory: dict[str, dict[int, dict[str, Any]]], feats: FrameFeatures, index: int,
          sparse: torch.Tensor, multimask: bool, *, cond: bool, horizon: int, reverse: bool,
          remember: bool = True) -> StepPrediction:
    """One frame: memory attention, mask decoder, memory encoder (as ``Sam2Engine._step``).

    ``remember=False`` skips the memory encoder: for the last frame of a clip, whose
    memory no later frame reads, the predictions are the same either way.
    """
    vision = [feats.image_embed.flatten(2).permute(2, 0, 1)]
    vision_pos = [feats.image_pos.flatten(2).permute(2, 0, 1)]
    sizes = [tuple(feats.image_embed.shape[-2:])]
    pix_feat = sam2._prepare_memory_conditioned_features(
        frame_idx=index, is_init_cond_frame=cond, current_vision_feats=vision,
        current_vision_pos_embeds=vision_pos, feat_sizes=sizes, output_dict=memory,
        num_frames=horizon, track_in_reverse=reverse)
    logits, ious, tokens, object_logits = _decode(sam2, pix_feat, feats, sparse, multimask)
    logits = logits.float()
    best = ious.argmax(dim=1) if logits.shape[1] > 1 else torch.zeros_like(ious[:, 0], dtype=torch.long)
    rows = torch.arange(logits.shape[0], device=logits.device)
    chosen = logits[rows, best].unsqueeze(1)
    token = tokens[rows, best] if tokens.shape[1] > 1 else tokens[:, 0]
    kept = torch.where(object_logits[:, :, None, None] > 0, chosen, torch.full_like(chosen, NO_OBJ_SCORE))
    prediction = StepPrediction(logits=logits, ious=ious.float(), object_logits=object_logits.float(), kept=kept)
    if not remember:
        return prediction
    size = int(sam2.image_size)
    maskmem, maskmem_pos = sam2._encode_new_memory(
        current_vision_feats=vision, feat_sizes=sizes, pred_masks_high_res=upsample_mask_logits(kept, size, size),
        object_score_logits=object_logits, is_mask_from_pts=cond)
    entry = {"maskmem_features": maskmem, "maskmem_pos_enc": maskmem_pos,
             "obj_ptr": object_pointer(sam2, token, object_logits)}
    memory["cond_frame_outputs" if cond else "non_cond_frame_outputs"][index] = entry
    return prediction


def _release_inference_caches(sam2: nn.Module) -> None:
    """Make SAM 2's lazily cached rotary tables usable by autograd.

    The memory attention computes its rotary tables on first use and keeps them on the
    module; made by an inference-mode call (the engine's), they cannot take part in a
    graph that is differentiated, so such tables are replaced by ordinary copies.
    """
    for module in sam2.modules():
        table = getattr(module, "freqs_cis", None)
        if isinstance(table, torch.Tensor) and table.is_inference():
            module.freqs_cis = table.clone()


def segment_clip(sam2: nn.Module, frames: list[FrameFeatures], seed: int, sparse: torch.Tensor,
                 multimask: bool) -> list[StepPrediction]:
    """Seed B objects on frame ``seed`` with ``sparse`` [B, P, C], track them over every frame.

    ``frames[t]`` holds frame t's features for each of the B objects (rows in object
    order). Returns one prediction per frame, in frame order.
    """
    horizon = len(frames)
    if not 0 <= seed < horizon:
        raise Sam2PathError(f"seed frame {seed} is outside the {horizon} frames")
    count = sparse.shape[0]
    for t, feats in enumerate(frames):
        if feats.image_embed.shape[0] != count:
            raise Sam2PathError(f"frame {t} has features of {feats.image_embed.shape[0]} objects, "
                                f"the prompt has {count}")
    if torch.is_grad_enabled():
        _release_inference_caches(sam2)
    memory: dict[str, dict[int, dict[str, Any]]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    visits = [(t, False) for t in range(seed + 1, horizon)] + [(t, True) for t in range(seed - 1, -1, -1)]
    out: dict[int, StepPrediction] = {
        seed: _step(sam2, memory, frames[seed], seed, sparse, multimask, cond=True, horizon=horizon, reverse=False,
                    remember=bool(visits))}
    track_sparse = padding_prompt(sam2, count)
    track_multimask = sam2._use_multimask(False, None)
    for number, (t, reverse) in enumerate(visits, start=1):
        out[t] = _step(sam2, memory, frames[t], t, track_sparse, track_multimask, cond=False,
                       horizon=horizon, reverse=reverse, remember=number < len(visits))
    return [out[t] for t in range(horizon)]
