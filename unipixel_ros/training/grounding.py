"""Training aids for text referring: the language model finds the named object and passes on its place.

A ``<SEG>`` seed that SAM 2 segments the right shape from has to say where the shape is:
SAM 2's own click token at the shape's deepest pixel, in both ``<SEG>`` slots, segments
the target of a synthetic text request at IoU 0.82. Writing such a seed takes the
three-layer language model two steps: read the words into the position that predicts
``<|seg|>``, then attend from there to the image tokens that match them and read their
place. The mask losses through the frozen SAM 2 carry neither step well: an attention
spread over ~140 image tokens passes back a gradient of ~1 / 140 to the right one, and an
image token's place is not in its state unless the language model derives it from its
rotary positions (``ROPE_THETA`` in :mod:`unipixel_ros.training.recipe`).

Three training-only terms give those steps a direct signal:

- ``place``: a linear probe reads SAM 2's click token of each image token's cell centre
  from the token's state at the input of the last layer, so that what attention reads
  there says where it read it;
- ``pointing``: at the last layer, the first attention head of each position predicting
  ``<|seg|>`` puts its weight on the image tokens of the target on the seed frame
  (``-log`` of the weight on them);
- ``seeding``: the ``<SEG>`` seed is pulled towards the target's click token at its
  deepest pixel on the seed frame (squared error).

None of this changes the model or what inference computes; the probe is not saved.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unipixel_ros.regions import resize_to_grid
from unipixel_ros.sampling import RESIZE_FACTOR, SPATIAL_MERGE_SIZE

# A cell belongs to the target when the target covers at least this share of the cell
# the target covers most (a small shape covers no cell fully).
POINTING_COVERAGE = 0.5
POINTING_HEAD = 0


class GroundingError(ValueError):
    """Inputs the grounding aids cannot read (no vision tokens, masks off the grid)."""


def cell_coverage(mask: np.ndarray, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Share of each merged vision token's cell an H x W mask covers: [grid_h / 2 * grid_w / 2], row order.

    The mask is resized as :func:`unipixel_ros.regions.region_token_masks` resizes region masks,
    then averaged over each 28 x 28 cell.
    """
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    resized = resize_to_grid(m, *grid_hw)
    return F.avg_pool2d(resized, kernel_size=RESIZE_FACTOR, stride=RESIZE_FACTOR).flatten()


def target_cells(mask: np.ndarray, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Bool [cells] of the merged tokens an object's mask lies on (see ``POINTING_COVERAGE``)."""
    coverage = cell_coverage(mask, grid_hw)
    if float(coverage.max()) <= 0:
        raise GroundingError("the target's mask is empty on the seed frame")
    return coverage >= POINTING_COVERAGE * coverage.max()


def cell_centres(grid_hw: tuple[int, int], width: int, height: int) -> np.ndarray:
    """Centre of every merged token's cell on a ``width`` x ``height`` frame, (x, y) pixels: [cells, 2], row order."""
    rows, cols = grid_hw[0] // SPATIAL_MERGE_SIZE, grid_hw[1] // SPATIAL_MERGE_SIZE
    y, x = np.meshgrid((np.arange(rows) + 0.5) / rows * height, (np.arange(cols) + 0.5) / cols * width,
                       indexing="ij")
    return np.stack([x.ravel(), y.ravel()], axis=1) - 0.5


def click_token(engine, x: float, y: float, width: int, height: int) -> torch.Tensor:
    """SAM 2's prompt token [C] of a positive click at pixel (x, y)."""
    sparse, _ = engine.click_prompt(width, height, points=[(x, y)], labels=[1])
    return sparse[0, 0]


def point_seed(engine, mask: np.ndarray) -> torch.Tensor:
    """The seed SAM 2 segments an object from as from a click: its click token at the object's
    deepest pixel (farthest from the outline), in both ``<SEG>`` slots: [2, C]."""
    height, width = mask.shape
    depth = cv2.distanceTransform(np.pad(np.asarray(mask, dtype=np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    if float(depth.max()) <= 0:
        raise GroundingError("the target's mask is empty on the seed frame")
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return click_token(engine, float(x), float(y), width, height).expand(2, -1)


@dataclass
class LastLayerView:
    """What the grounding terms read of one language-model pass (batch of one)."""

    states: torch.Tensor      # [L, D] input of the last decoder layer
    attention: torch.Tensor   # [heads, L, L] the last layer's attention weights


@contextmanager
def last_layer_view(language_model: nn.Module) -> Iterator[list[LastLayerView]]:
    """Capture the last decoder layer's input and attention weights of each pass in the block.

    Runs the language model with eager attention there (the same arithmetic as SDPA, with
    the weights returned), and puts the implementation back afterwards.
    """
    config = language_model.config
    before = config._attn_implementation
    layer = language_model.layers[-1]
    seen: list[LastLayerView] = []
    inputs: list[torch.Tensor] = []

    def take_input(_module, args, kwargs):
        inputs.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    def take_attention(_module, _args, output):
        weights = output[1]
        if weights is None:
            raise GroundingError("the last layer returned no attention weights (not eager attention)")
        seen.append(LastLayerView(inputs.pop()[0], weights[0]))

    config._attn_implementation = "eager"
    handles = [layer.register_forward_pre_hook(take_input, with_kwargs=True),
               layer.self_attn.register_forward_hook(take_attention)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()
        config._attn_implementation = before


class PlaceProbe(nn.Module):
    """Linear read-out of the click token of an image token's cell from the token's state."""

    def __init__(self, dim: int, token_dim: int) -> None:
        super().__init__()
        self.place = nn.Linear(dim, token_dim)

    def loss(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the tokens read from ``states`` [N, D] against ``tokens`` [N, C]."""
        if states.shape[0] != tokens.shape[0]:
            raise GroundingError(f"{states.shape[0]} token states but {tokens.shape[0]} places")
        return F.mse_loss(self.place(states.float()), tokens.to(states.device).float())


def pointing_loss(attention: torch.Tensor, queries: torch.Tensor, vision_positions: torch.Tensor,
                  targets: list[torch.Tensor]) -> torch.Tensor:
    """``-log`` of the weight ``POINTING_HEAD`` puts on each query's target tokens, averaged.

    ``attention`` [heads, L, L]; ``queries`` [N] the positions predicting ``<|seg|>``;
    ``vision_positions`` [V] the sequence positions of the vision tokens; ``targets`` N bool
    masks over the first ``len(mask)`` vision tokens (the seed frame's pair).
    """
    if queries.numel() != len(targets):
        raise GroundingError(f"{queries.numel()} <|seg|> positions but {len(targets)} targets")
    losses = []
    for query, cells in zip(queries.tolist(), targets):
        keys = vision_positions[:cells.numel()][cells.to(vision_positions.device)]
        weight = attention[POINTING_HEAD, query, keys.to(attention.device)].float().sum()
        losses.append(-torch.log(weight.clamp(min=1e-6)))
    return torch.stack(losses).mean()
