"""Building SAM 2 models (``SAM2Base``): UniPixel's own, a tiny random one, or a checkpoint's.

From a pip-sam2 config (UniPixel uses SAM 2.1 hiera-b+ at 768 px) with an optional
state dict, as the UniPixel model builds its ``.sam2``; a tiny random one for tests,
export checks and benchmarks; or from a UniPixel checkpoint (a local folder or a
Hugging Face id), whose ``sam2.*`` tensors ``load_sam2_from_checkpoint`` reads through
the UniPixel loader, so exporting the mask decoder needs no memory for the language
model. This is model building: the decoder backends (``unipixel_ros.decoders``) take a
built model and never import this package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

SAM2_PREFIX = "sam2."

# A random SAM 2.1 with a 4-block, 8-channel image encoder: the mask decoder keeps its
# real size (256-d two-way transformer), everything else is as small as sam2 allows.
TINY_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,1,1]",
    "++model.image_encoder.trunk.global_att_blocks=[]",
    "++model.image_encoder.trunk.window_spec=[8,4,4,4]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.memory_attention.num_layers=1",
)
TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
# The synthetic model's SAM 2: the tiny one decoding one mask per tracked frame. SAM 2.1 decodes
# three there and keeps the one its IoU head ranks first; trained from scratch at this budget
# that head ranks by slot, not content (it predicts about the same three IoUs for every
# object), while the three masks split the colours between them, so tracking kept a slot
# that missed whole colours (blue and purple in one run) and lost those shapes (model card).
SYNTHETIC_OVERRIDES = TINY_OVERRIDES + ("++model.multimask_output_for_tracking=false",)


class Sam2SourceError(ValueError):
    """Weights or a model object that do not give a usable SAM 2."""


def build_sam2_model(config: str, image_size: int, overrides: Sequence[str] = (),
                     state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A SAM2Base in eval mode from a pip-sam2 config name, with ``image_size`` overridden."""
    import sam2  # noqa: F401  (initialises sam2's hydra config search path)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=config, overrides=[f"++model.image_size={image_size}", *overrides])
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    if state_dict is not None:
        missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
        if missing:
            raise Sam2SourceError(f"SAM 2 weights are missing {len(missing)} parameters, "
                                  f"e.g. {missing[:3]}")
        if unexpected:
            raise Sam2SourceError(f"SAM 2 weights hold {len(unexpected)} unknown parameters, "
                                  f"e.g. {unexpected[:3]}")
    return model.eval()


def tiny_sam2(image_size: int = 256, seed: int = 0) -> nn.Module:
    """A random tiny SAM 2.1 (full-size mask decoder) for tests, export checks and benchmarks.

    A randomly initialised decoder predicts every object absent and mask logits near 0,
    which would make mask comparisons trivial; the object-score bias and the mask
    hypernetworks' output scale are set so objects are present and logits spread like a
    trained model's (|logit| of several units).
    """
    torch.manual_seed(seed)
    model = build_sam2_model(TINY_CONFIG, image_size, TINY_OVERRIDES)
    decoder = model.sam_mask_decoder
    with torch.no_grad():
        decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30.0)
    return model


def load_sam2_from_checkpoint(source: str | Path) -> nn.Module:
    """SAM2Base with the weights of a UniPixel checkpoint (local folder or Hugging Face id).

    Goes through the UniPixel loader's checkpoint handling (folder or hub download,
    config, weight files, key naming) but reads only the ``sam2.*`` tensors, so
    exporting the decoder does not need memory for the whole language model.
    """
    from safetensors import safe_open

    from unipixel_ros.model.checkpoint_keys import to_model_key
    from unipixel_ros.model.config import resolve_sam2_config
    from unipixel_ros.model.loader import load_config, resolve_checkpoint_dir, weight_files

    folder = resolve_checkpoint_dir(source)
    config = load_config(folder)
    config_file, overrides = resolve_sam2_config(config.sam2_config)
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        with safe_open(str(file), framework="pt") as shard:
            for key in shard.keys():
                name = to_model_key(key)
                if name.startswith(SAM2_PREFIX):
                    tensors[name[len(SAM2_PREFIX):]] = shard.get_tensor(key)
    if not tensors:
        raise Sam2SourceError(f"{folder} holds no '{SAM2_PREFIX}*' tensors")
    return build_sam2_model(config_file, config.sam2_image_size, overrides, state_dict=tensors)
