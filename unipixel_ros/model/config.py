"""The ``pixel_qwen2_5_vl`` configuration: Qwen2.5-VL plus the UniPixel fields.

The published UniPixel checkpoints name their model type ``pixel_qwen2_5_vl`` and
carry, besides the Qwen2.5-VL fields, the SAM 2 config name, SAM 2 input size,
the number of SAM prompt tokens per ``<SEG>`` and the ids of the three special
tokens. Fields the release stores but inference does not use (training flags such
as ``sample_objects``) are kept as plain attributes so a config round-trips.
"""
from __future__ import annotations

import re

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, Qwen2_5_VLConfig

from unipixel_ros.geometry import SAM_IMAGE_SIZE

MODEL_TYPE = "pixel_qwen2_5_vl"

# The published checkpoints name SAM 2 configs as the authors' training code did
# ("configs/sam2.1_hiera_b+"); pip ``sam2`` keeps the same files under a version folder.
PUBLISHED_SAM2_CONFIG = "configs/sam2.1_hiera_b+"
_PUBLISHED_NAME = re.compile(r"configs/(sam2(?:\.1)?)_hiera_(t|s|b\+|l)")
# A SAM 2.1 small enough for tests; built from the tiny recipe in model/sam2_source.py.
TINY_SAM2_CONFIG = "unipixel_ros/tiny-sam2.1"
# The shipped synthetic model's: the tiny one with one mask per tracked frame (model/sam2_source.py).
SYNTHETIC_SAM2_CONFIG = "unipixel_ros/synthetic-sam2.1"


class Sam2ConfigError(ValueError):
    """A ``sam2_config`` name that names no known SAM 2 configuration."""


def resolve_sam2_config(name: str) -> tuple[str, tuple[str, ...]]:
    """The pip-sam2 config file and hydra overrides that a ``sam2_config`` name stands for.

    Accepts the names stored in the published checkpoints, pip-sam2 config paths
    (``configs/sam2.1/...yaml``) and the tiny test configuration.
    """
    published = _PUBLISHED_NAME.fullmatch(name)
    if published:
        version, size = published.groups()
        return f"configs/{version}/{version}_hiera_{size}.yaml", ()
    if name == TINY_SAM2_CONFIG:
        from unipixel_ros.model.sam2_source import TINY_CONFIG, TINY_OVERRIDES
        return TINY_CONFIG, tuple(TINY_OVERRIDES)
    if name == SYNTHETIC_SAM2_CONFIG:
        from unipixel_ros.model.sam2_source import SYNTHETIC_OVERRIDES, TINY_CONFIG
        return TINY_CONFIG, tuple(SYNTHETIC_OVERRIDES)
    if name.startswith("configs/") and name.endswith(".yaml"):
        return name, ()
    raise Sam2ConfigError(f"unknown sam2_config {name!r}; expected a published name such as "
                          f"{PUBLISHED_SAM2_CONFIG!r}, {TINY_SAM2_CONFIG!r}, {SYNTHETIC_SAM2_CONFIG!r}, or a pip-sam2 config path "
                          "such as 'configs/sam2.1/sam2.1_hiera_b+.yaml'")


@strict
class PixelQwen2_5_VLConfig(Qwen2_5_VLConfig):
    """Qwen2.5-VL configuration with UniPixel's SAM 2 and special-token fields."""

    model_type = MODEL_TYPE

    sam2_config: str = PUBLISHED_SAM2_CONFIG
    sam2_image_size: int = SAM_IMAGE_SIZE
    sam2_hidden_tokens: int = 2
    ref_token_id: int | None = None
    seg_token_id: int | None = None
    mem_token_id: int | None = None

    def __post_init__(self, **kwargs):
        # Releases saved by transformers 4.x repeat the RoPE fields at the top level
        # next to ``text_config``; the copy inside ``text_config`` is the one used.
        if self.text_config is not None:
            kwargs.pop("rope_scaling", None)
            kwargs.pop("rope_theta", None)
        super().__post_init__(**kwargs)


AutoConfig.register(MODEL_TYPE, PixelQwen2_5_VLConfig, exist_ok=True)
