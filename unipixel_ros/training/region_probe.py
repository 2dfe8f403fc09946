"""A region probe: colour and shape read linearly from each ``<|mem|>`` token's pooled features.

An injection pass answers "What colour is [0]?" from one ``<|mem|>`` token: ``msk_proj``
of the vision features pooled over the object's region. The tiny vision tower starts
untrained and learns only from what the answers' cross-entropy sends back through the
language model; its pooled region features then hold colour too weakly for the language
model to read within the budget (measured in the model card: answers near chance). The
probe gives those features a direct signal: a linear read-out of the object's colour and
shape from the pooled features, trained next to the paper's losses. It is a training aid
only: inference never runs it and it is not saved with the weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unipixel_ros.synthetic.scenes import SHAPES
from unipixel_ros.training.attributes import COLOURS, Attributes


class RegionProbe(nn.Module):
    """Linear colour and shape logits of pooled region features [M, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.colour = nn.Linear(dim, len(COLOURS))
        self.shape = nn.Linear(dim, len(SHAPES))

    def loss(self, features: torch.Tensor, attributes: list[Attributes | None]) -> torch.Tensor:
        """Mean cross-entropy of colour plus shape over the regions whose object is known
        (``None``: an object not visible on the sampled frames, pooled over the whole frame)."""
        if features.shape[0] != len(attributes):
            raise ValueError(f"{features.shape[0]} pooled regions but {len(attributes)} attributes")
        known = [i for i, a in enumerate(attributes) if a is not None]
        if not known:
            return features.sum() * 0.0
        rows = features[known].float()
        colours = torch.tensor([COLOURS.index(attributes[i].colour) for i in known], device=rows.device)
        shapes = torch.tensor([SHAPES.index(attributes[i].shape) for i in known], device=rows.device)
        return F.cross_entropy(self.colour(rows), colours) + F.cross_entropy(self.shape(rows), shapes)
