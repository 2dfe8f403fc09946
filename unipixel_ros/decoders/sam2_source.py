"""Building a SAM 2 model (``SAM2Base``) to take the mask decoder from.

The exporter, benchmark and tests need a SAM 2 model without the whole UniPixel
model: from a pip-sam2 config (UniPixel uses SAM 2.1 hiera-b+ at 768 px) with an
optional state dict, or a tiny random one. A UniPixel checkpoint stores SAM 2 under
the ``sam2.`` prefix; ``sam2_state_dict`` strips it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

UNIPIXEL_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_b+.yaml"
UNIPIXEL_SAM2_IMAGE_SIZE = 768
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


class CheckpointError(ValueError):
    """A checkpoint that holds no usable SAM 2 weights."""


def build_sam2_model(config: str = UNIPIXEL_SAM2_CONFIG, image_size: int = UNIPIXEL_SAM2_IMAGE_SIZE,
                     overrides: Sequence[str] = (),
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
            raise CheckpointError(f"SAM 2 weights are missing {len(missing)} parameters, "
                                  f"e.g. {missing[:3]}")
        if unexpected:
            raise CheckpointError(f"SAM 2 weights hold {len(unexpected)} unknown parameters, "
                                  f"e.g. {unexpected[:3]}")
    return model.eval()


def tiny_sam2(image_size: int = 256, seed: int = 0) -> nn.Module:
    """A random tiny SAM 2.1 (full-size mask decoder) for tests, export checks and benchmarks."""
    torch.manual_seed(seed)
    return build_sam2_model(TINY_CONFIG, image_size, TINY_OVERRIDES)


def sam2_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The ``sam2.*`` tensors of a UniPixel checkpoint (a folder of safetensors shards
    or one file), with the prefix stripped."""
    from safetensors import safe_open

    path = Path(checkpoint)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise CheckpointError(f"no safetensors file at {path}")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as shard:
            for key in shard.keys():
                if key.startswith(SAM2_PREFIX):
                    tensors[key[len(SAM2_PREFIX):]] = shard.get_tensor(key)
    if not tensors:
        raise CheckpointError(f"{path} holds no '{SAM2_PREFIX}*' tensors")
    return tensors
