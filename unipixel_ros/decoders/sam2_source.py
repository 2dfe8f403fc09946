"""Building a SAM 2 model (``SAM2Base``) to take the mask decoder from.

The exporter, benchmark and tests need a SAM 2 model without the whole UniPixel
model: from a pip-sam2 config (UniPixel uses SAM 2.1 hiera-b+ at 768 px) with an
optional state dict, or a tiny random one. A UniPixel checkpoint (a local folder or
a Hugging Face id) names its SAM 2 config in ``config.json`` and stores SAM 2 under
the ``sam2.`` prefix; ``load_sam2_from_checkpoint`` reads just those tensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import json

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
        missing, unexpected = model.load_state_dict(saved_names_to_sam2(state_dict, model), strict=False)
        if missing:
            raise CheckpointError(f"SAM 2 weights are missing {len(missing)} parameters, "
                                  f"e.g. {missing[:3]}")
        if unexpected:
            raise CheckpointError(f"SAM 2 weights hold {len(unexpected)} unknown parameters, "
                                  f"e.g. {unexpected[:3]}")
    return model.eval()


def saved_names_to_sam2(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Undo the ``gamma`` -> ``weight`` rename transformers applies when saving.

    The published checkpoints store SAM 2's layer-scale parameters (the memory
    encoder's ``fuser.layers.N.gamma``) as ``...weight``; sam2 expects ``gamma``.
    """
    expected = set(model.state_dict())
    renamed = {}
    for key, value in state_dict.items():
        gamma = key.removesuffix("weight") + "gamma" if key.endswith(".weight") else key
        renamed[gamma if key not in expected and gamma in expected else key] = value
    return renamed


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


def sam2_of(model: Any) -> nn.Module:
    """The SAM2Base inside a UniPixel model (its ``.sam2``), or ``model`` itself."""
    from sam2.modeling.sam2_base import SAM2Base

    sam2 = getattr(model, "sam2", model)
    if not isinstance(sam2, SAM2Base):
        raise CheckpointError(f"{type(model).__name__} is neither a SAM2Base nor has a .sam2 SAM2Base")
    return sam2


def pip_config_name(name: str) -> str:
    """A checkpoint's ``sam2_config`` (e.g. ``configs/sam2.1_hiera_b+``) as pip sam2 names it
    (``configs/sam2.1/sam2.1_hiera_b+.yaml``)."""
    base = Path(name).name.removesuffix(".yaml")
    family = "sam2.1" if base.startswith("sam2.1_") else "sam2"
    return f"configs/{family}/{base}.yaml"


INDEX_FILE = "model.safetensors.index.json"


def _shards_holding_sam2(folder: Path) -> list[Path]:
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted({f for key, f in weight_map.items() if key.startswith(SAM2_PREFIX)})
        return [folder / n for n in names]
    return sorted(folder.glob("*.safetensors"))


def resolve_checkpoint(source: str | Path) -> Path:
    """A local checkpoint folder, or the files of a Hugging Face model id that hold SAM 2."""
    path = Path(source)
    if path.exists():
        return path
    from huggingface_hub import hf_hub_download

    repo = str(source)
    try:
        config = Path(hf_hub_download(repo, "config.json"))
        index = Path(hf_hub_download(repo, INDEX_FILE))
        for shard in _shards_holding_sam2(index.parent):
            hf_hub_download(repo, shard.name)
    except Exception as e:  # hub errors come in many types; all mean "not available"
        raise CheckpointError(f"{source!r} is no local path and could not be fetched from the "
                              f"Hugging Face hub: {e}") from e
    return config.parent


def load_sam2_from_checkpoint(source: str | Path) -> nn.Module:
    """SAM2Base with the weights of a UniPixel checkpoint, built from its ``config.json``."""
    folder = resolve_checkpoint(source)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no config.json")
    config = json.loads(config_file.read_text())
    if not config.get("sam2_config"):
        raise CheckpointError(f"{config_file} names no sam2_config: not a UniPixel checkpoint")
    return build_sam2_model(pip_config_name(config["sam2_config"]),
                            int(config.get("sam2_image_size", UNIPIXEL_SAM2_IMAGE_SIZE)),
                            state_dict=sam2_state_dict(folder))


def sam2_state_dict(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The ``sam2.*`` tensors of a UniPixel checkpoint (a folder of safetensors shards
    or one file), with the prefix stripped."""
    from safetensors import safe_open

    path = Path(checkpoint)
    files = _shards_holding_sam2(path) if path.is_dir() else [path]
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
