"""Parameter names in UniPixel checkpoints versus the names of this model's parameters.

Two namings of the Qwen2.5-VL part exist: the published checkpoints (written by
transformers 4.x) use ``model.embed_tokens`` / ``model.layers.*`` / ``model.norm`` and
``visual.*``; transformers 5.x modules (and checkpoints saved from them) use
``model.language_model.*`` and ``model.visual.*``. Separately, SAM 2's memory-fuser
layer scale is the parameter ``gamma`` in pip ``sam2`` but was saved as ``weight``
(transformers 4.x rewrote ``gamma`` names when loading the SAM 2 weights for training).
Every other name is the same in both.
"""
from __future__ import annotations

import re

# (legacy checkpoint pattern, model replacement) and the inverse, applied first match only.
_LEGACY_TO_MODEL = (
    (re.compile(r"^model\.(embed_tokens|layers|norm)\."), r"model.language_model.\1."),
    (re.compile(r"^visual\."), r"model.visual."),
    (re.compile(r"^(sam2\.memory_encoder\.fuser\.layers\.\d+)\.weight$"), r"\1.gamma"),
)
_MODEL_TO_LEGACY = (
    (re.compile(r"^model\.language_model\."), r"model."),
    (re.compile(r"^model\.visual\."), r"visual."),
    (re.compile(r"^(sam2\.memory_encoder\.fuser\.layers\.\d+)\.gamma$"), r"\1.weight"),
)


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, replacement in rules:
        renamed, count = pattern.subn(replacement, key)
        if count:
            return renamed
    return key


def to_model_key(checkpoint_key: str) -> str:
    """The model parameter a checkpoint key (either naming) belongs to."""
    return _rename(checkpoint_key, _LEGACY_TO_MODEL)


def to_legacy_key(model_key: str) -> str:
    """The name the published checkpoints give a model parameter."""
    return _rename(model_key, _MODEL_TO_LEGACY)
