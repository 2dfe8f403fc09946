"""Coordinate and image transforms between camera pixels, SAM 2's square input and masks.

Each transform has exactly one function here; everything else imports it.

Conventions of the published UniPixel checkpoints (SAM 2.1 at ``S`` = 768):

* SAM input: RGB / 255, resized to S x S with bilinear interpolation and antialiasing
  (aspect ratio not kept), normalised with ImageNet mean/std.
* A point prompt is float32 SAM-frame pixels (x * S / W, y * S / H); the prompt encoder
  adds 0.5 and divides by S itself.
* A box prompt is two int32 corners (x0, y0), (x1, y1) in SAM-frame pixel indices, the
  form SAM 2's ``mask_to_box`` produces (inclusive min/max pixel index of a mask in the
  S x S frame). A box drawn in camera pixels is scaled like a point and truncated to
  int32 (the SAM pixel containing each corner), clamped to [0, S - 1].
* A mask prompt becomes a box or point exactly as the checkpoints were evaluated: the
  mask is resized to S x S (bilinear, antialiased), thresholded at > 0, then either its
  bounding box (``mask_to_box``) or its most interior pixel (maximum of the L2 distance
  transform, zero-padded by one pixel, first in row-major order on ties).
* The prompt's frame gets a 1-D temporal coordinate ``position / (N_even - 1)``, where
  position is its index among the sampled frames and N_even the padded sampled count
  (= 2 * the processor's temporal grid size).
* Output masks: SAM's low-resolution logits are resized straight to the camera's H x W
  (bilinear, align_corners=False, no antialias) and binarised with logits > 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from unipixel_ros.mask_points import EXACT, deepest_point
from unipixel_ros.sampling import padded_frame_count

SAM_IMAGE_SIZE = 768
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GeometryError(ValueError):
    """An input whose shape or value a transform cannot handle."""


class PixelBox(NamedTuple):
    """A tight box in the fields of ``sensor_msgs/RegionOfInterest``."""

    x_offset: int
    y_offset: int
    width: int
    height: int


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise GeometryError(f"image size must be positive, got {width}x{height}")


def point_to_sam(x: float, y: float, width: int, height: int, size: int = SAM_IMAGE_SIZE) -> np.ndarray:
    """Camera pixel point -> SAM-frame point, float32 array [x, y]."""
    _check_size(width, height)
    return np.array([x * size / width, y * size / height], dtype=np.float32)


def box_to_sam(x0: float, y0: float, x1: float, y1: float, width: int, height: int,
               size: int = SAM_IMAGE_SIZE) -> np.ndarray:
    """Camera pixel box -> SAM-frame corners, int32 array [[x0, y0], [x1, y1]].

    Each corner is scaled like a point, truncated toward zero, clamped to [0, size - 1].
    """
    _check_size(width, height)
    scaled = np.array([[x0 * size / width, y0 * size / height],
                       [x1 * size / width, y1 * size / height]], dtype=np.float64)
    return np.clip(np.trunc(scaled), 0, size - 1).astype(np.int32)


def mask_to_sam_frame(mask: np.ndarray | torch.Tensor, size: int = SAM_IMAGE_SIZE) -> torch.Tensor:
    """H x W (or [..., H, W]) mask -> bool mask on the S x S SAM frame (bilinear, antialiased, > 0)."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).float()
    if m.ndim < 2:
        raise GeometryError(f"mask must have at least 2 dimensions, got shape {tuple(m.shape)}")
    lead = m.shape[:-2]
    flat = m.reshape(-1, 1, *m.shape[-2:])
    resized = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (resized > 0).reshape(*lead, size, size)


def mask_to_sam_box(mask: np.ndarray | torch.Tensor, size: int = SAM_IMAGE_SIZE) -> np.ndarray:
    """Mask prompt -> int32 SAM-frame box [[x0, y0], [x1, y1]] (inclusive pixel indices)."""
    sam_mask = mask_to_sam_frame(mask, size).cpu().numpy()
    if sam_mask.ndim != 2:
        raise GeometryError(f"expected one H x W mask, got shape {sam_mask.shape}")
    ys, xs = np.nonzero(sam_mask)
    if xs.size == 0:
        raise GeometryError("mask is empty: no box")
    return np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], dtype=np.int32)


def mask_to_sam_point(mask: np.ndarray | torch.Tensor, size: int = SAM_IMAGE_SIZE) -> np.ndarray:
    """Mask prompt -> float32 SAM-frame point [x, y]: the pixel farthest from the mask border."""
    sam_mask = mask_to_sam_frame(mask, size).cpu().numpy()
    if sam_mask.ndim != 2:
        raise GeometryError(f"expected one H x W mask, got shape {sam_mask.shape}")
    if not sam_mask.any():
        raise GeometryError("mask is empty: no point")
    return np.array(deepest_point(sam_mask, EXACT), dtype=np.float32)


def temporal_coordinate(position: int, num_sampled: int) -> float:
    """Normalised temporal coordinate of a prompt on sampled frame ``position`` (0-based).

    ``position / (N_even - 1)`` in float32, N_even = ``num_sampled`` padded to even; this is
    the value the 1-D random-Fourier temporal encoding consumes (it maps it to 2v - 1).
    """
    if not 0 <= position < num_sampled:
        raise GeometryError(f"frame position {position} is outside the {num_sampled} sampled frames")
    return float(np.float32(position) / np.float32(padded_frame_count(num_sampled) - 1))


def sam_preprocess(frames: np.ndarray | torch.Tensor, size: int = SAM_IMAGE_SIZE) -> torch.Tensor:
    """RGB uint8 frames [T, H, W, 3] (or one [H, W, 3]) -> float32 SAM input [T, 3, S, S]."""
    video = torch.as_tensor(frames)
    if video.ndim == 3:
        video = video.unsqueeze(0)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise GeometryError(f"expected RGB frames [T, H, W, 3], got shape {tuple(video.shape)}")
    video = video.permute(0, 3, 1, 2).float() / 255
    video = F.interpolate(video, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = video.new_tensor(IMAGENET_MEAN)[None, :, None, None]
    std = video.new_tensor(IMAGENET_STD)[None, :, None, None]
    return (video - mean) / std


def upsample_mask_logits(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mask logits [..., h, w] -> [..., height, width] (bilinear, align_corners=False)."""
    _check_size(width, height)
    if logits.ndim < 2:
        raise GeometryError(f"logits must have at least 2 dimensions, got shape {tuple(logits.shape)}")
    if tuple(logits.shape[-2:]) == (height, width):
        return logits
    lead = logits.shape[:-2]
    flat = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    resized = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, height, width)


def binarize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits -> bool mask (logits > 0)."""
    return logits > 0


def logits_to_masks(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """SAM mask logits -> bool masks at the camera resolution."""
    return binarize_logits(upsample_mask_logits(logits, height, width))


def mask_to_box(mask: np.ndarray | torch.Tensor) -> PixelBox:
    """Tight box around the True pixels of an H x W mask; all zeros for an empty mask."""
    m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 2:
        raise GeometryError(f"expected one H x W mask, got shape {m.shape}")
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return PixelBox(0, 0, 0, 0)
    return PixelBox(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
