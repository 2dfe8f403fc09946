"""Region masks over Qwen2.5-VL's merged vision tokens, for ``<|mem|>`` feature pooling.

How the published UniPixel checkpoints turn per-frame object masks into token regions
(masks on the N frames sampled for the language model, at camera resolution):

1. Frames are grouped in pairs (one temporal patch each); an odd N repeats its last
   frame. A pair's mask is the union of its two frames.
2. An object whose paired masks are empty everywhere is treated as covering every pixel
   of every pair (so it still gets memory tokens).
3. Each pair mask is resized to the processor's pixel size (grid_h * 14, grid_w * 14) with
   bilinear interpolation and antialiasing, max-pooled over 28 x 28 cells (one merged
   token each) and thresholded at > 0: a token is in the region if any pixel of its cell
   has a non-zero interpolated value.

The result is a bool tensor [grid_t, O, grid_h / 2, grid_w / 2] in ROW order (raster
order of merged tokens within each frame pair).

The pooled features come from the input of the vision merger's MLP (after its RMSNorm,
2x2 patches concatenated: 4 * vision hidden size per token). Qwen2.5-VL holds that
sequence in WINDOW order (tokens grouped by 4 x 4 windows of merged tokens, see
:func:`merged_window_index`) and only restores row order after the merger. The checkpoints
were trained by indexing the window-ordered slice of each frame pair with the row-ordered
mask, so the pooled vector of a region is the mean over a permuted set of tokens. To
reproduce the checkpoints, do exactly what :func:`pool_region_features` does: take the
merger-MLP input of the request's video as captured (window order, do NOT reorder it),
cut it into the per-pair slices of :func:`frame_pair_token_slices`, and average the rows
selected by the flattened row-order mask of each (object, pair) with a non-empty mask.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unipixel_ros.sampling import PATCH_SIZE, RESIZE_FACTOR, SPATIAL_MERGE_SIZE, TEMPORAL_PATCH_SIZE

VISION_WINDOW_SIZE = 112  # Qwen2.5-VL vision config ``window_size`` (pixels)


class RegionError(ValueError):
    """Masks or features whose shapes do not match the video grid."""


def _as_masks(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    m = masks if isinstance(masks, torch.Tensor) else torch.from_numpy(np.asarray(masks))
    if m.ndim != 4:
        raise RegionError(f"masks must be [frames, objects, H, W], got shape {tuple(m.shape)}")
    if m.shape[0] < 1 or m.shape[1] < 1:
        raise RegionError(f"masks need at least one frame and one object, got shape {tuple(m.shape)}")
    return (m > 0).float()


def pair_masks(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, O, H, W] masks -> [ceil(N/2), O, H, W] float 0/1: union per frame pair, empty objects filled.

    Steps 1 and 2 of the module description.
    """
    m = _as_masks(masks)
    if m.shape[0] % TEMPORAL_PATCH_SIZE:
        m = torch.cat([m, m[-1:]], dim=0)
    paired = m.reshape(-1, TEMPORAL_PATCH_SIZE, *m.shape[1:]).amax(dim=1)
    empty = paired.amax(dim=(0, 2, 3)) == 0
    paired[:, empty] = 1.0
    return paired


def object_frame_pairs(masks: np.ndarray | torch.Tensor) -> list[tuple[int, ...]]:
    """Per object (in mask order), the frame pairs whose paired mask is non-empty."""
    nonempty = pair_masks(masks).amax(dim=(2, 3)) > 0  # [pairs, O]
    return [tuple(torch.nonzero(nonempty[:, o]).flatten().tolist()) for o in range(nonempty.shape[1])]


def region_token_masks(masks: np.ndarray | torch.Tensor, grid_thw: tuple[int, int, int]) -> torch.Tensor:
    """[N, O, H, W] masks on the sampled frames -> bool [grid_t, O, grid_h/2, grid_w/2], row order."""
    grid_t, grid_h, grid_w = (int(v) for v in grid_thw)
    paired = pair_masks(masks)
    if paired.shape[0] != grid_t:
        raise RegionError(f"{paired.shape[0]} frame pairs do not match the video grid's t = {grid_t}")
    return F.max_pool2d(resize_to_grid(paired, grid_h, grid_w), kernel_size=RESIZE_FACTOR, stride=RESIZE_FACTOR) > 0


def resize_to_grid(masks: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Float masks [N, C, H, W] at the processor's pixel size (grid_h * 14, grid_w * 14), resized as
    step 3 of the module description does, ready to pool over 28 x 28 cells."""
    if grid_h % SPATIAL_MERGE_SIZE or grid_w % SPATIAL_MERGE_SIZE:
        raise RegionError(f"grid {grid_h}x{grid_w} is not divisible by the merge size {SPATIAL_MERGE_SIZE}")
    return F.interpolate(masks, size=(grid_h * PATCH_SIZE, grid_w * PATCH_SIZE), mode="bilinear",
                         align_corners=False, antialias=True)


def region_cells(region_masks: torch.Tensor) -> list[tuple[int, int]]:
    """(object position, frame pair) of every non-empty region, object-major: the order in
    which pooled features fill the ``<|mem|>`` tokens."""
    nonempty = region_masks.flatten(2).any(dim=2)  # [pairs, O]
    return [(o, p) for o in range(nonempty.shape[1]) for p in range(nonempty.shape[0]) if nonempty[p, o]]


def frame_pair_token_slices(grid_thw: tuple[int, int, int]) -> list[slice]:
    """Rows of the video's merger input that belong to each frame pair (contiguous, in
    pair order; inside a slice the rows are in window order)."""
    grid_t, grid_h, grid_w = (int(v) for v in grid_thw)
    step = (grid_h // SPATIAL_MERGE_SIZE) * (grid_w // SPATIAL_MERGE_SIZE)
    return [slice(p * step, (p + 1) * step) for p in range(grid_t)]


def merged_window_index(grid_thw: tuple[int, int, int], window_size: int = VISION_WINDOW_SIZE) -> torch.Tensor:
    """For each position of the window-ordered merged-token sequence, its row-order index.

    Windows are ``window_size / 28`` merged tokens square, taken row by row within each
    frame pair (partial windows at the right and bottom edges), tokens row by row within
    a window. ``features_row = features_window[torch.argsort(index)]``.
    """
    grid_t, grid_h, grid_w = (int(v) for v in grid_thw)
    side = window_size // RESIZE_FACTOR
    h2, w2 = grid_h // SPATIAL_MERGE_SIZE, grid_w // SPATIAL_MERGE_SIZE
    rows = torch.arange(h2 * w2).reshape(h2, w2)
    frame_order = torch.cat([rows[top:top + side, left:left + side].flatten()
                             for top in range(0, h2, side) for left in range(0, w2, side)])
    return torch.cat([frame_order + p * h2 * w2 for p in range(grid_t)])


def pool_region_features(merger_input: torch.Tensor, region_masks: torch.Tensor) -> torch.Tensor:
    """The ``<|mem|>`` features, before ``msk_proj``, exactly as the checkpoints were trained.

    merger_input: [grid_t * h2 * w2, D] input of the vision merger's MLP for this video, in
    the window order Qwen2.5-VL computes it in. region_masks: [grid_t, O, h2, w2] bool from
    :func:`region_token_masks`. Returns [len(region_cells(region_masks)), D], object-major.
    """
    pairs, num_objects, h2, w2 = region_masks.shape
    if merger_input.ndim != 2 or merger_input.shape[0] != pairs * h2 * w2:
        raise RegionError(
            f"merger input of shape {tuple(merger_input.shape)} does not hold {pairs} x {h2 * w2} tokens")
    slices = frame_pair_token_slices((pairs, h2 * SPATIAL_MERGE_SIZE, w2 * SPATIAL_MERGE_SIZE))
    flat = region_masks.reshape(pairs, num_objects, h2 * w2).to(merger_input.device)
    pooled = [merger_input[slices[p]][flat[p, o]].mean(dim=0) for o, p in region_cells(region_masks)]
    if not pooled:
        return merger_input.new_zeros((0, merger_input.shape[1]))
    return torch.stack(pooled)
