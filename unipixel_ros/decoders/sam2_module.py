"""The SAM 2 model a mask-decoder backend serves, from whatever model object callers hold."""
from __future__ import annotations

from typing import Any

from torch import nn


class NotSam2Error(TypeError):
    """An object that neither is a SAM2Base nor holds one as ``.sam2``."""


def sam2_of(model: Any) -> nn.Module:
    """The SAM2Base inside a UniPixel model (its ``.sam2``), or ``model`` itself."""
    from sam2.modeling.sam2_base import SAM2Base

    sam2 = getattr(model, "sam2", model)
    if not isinstance(sam2, SAM2Base):
        raise NotSam2Error(f"{type(model).__name__} is neither a SAM2Base nor has a .sam2 SAM2Base")
    return sam2
