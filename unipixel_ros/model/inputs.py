"""What one UniPixel request feeds the model, in model terms (tokens, pixels, prompts).

The pipeline turns user prompts into these: point / box prompts already in SAM-frame
pixel coordinates, region masks already on the merged vision-token grid. Keeping
the model's inputs a plain container means the model holds no per-request state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

POINT_LABEL = 1
BOX_LABELS = (2, 3)


class ModelInputError(ValueError):
    """Inputs that do not fit the model (counts, shapes or labels that disagree)."""


@dataclass(frozen=True)
class ReferenceInput:
    """One ``<|ref|>`` prompt: a point (label 1) or a box (two corners labelled 2, 3).

    ``coords`` are pixels of the square SAM input frame, shape (1, 2) for a point or
    (2, 2) for a box; the published model saw float32 points and int32 box corners,
    and the dtype is used as given. ``frame_index`` is the index of the frame the
    prompt was drawn on among the frames given to the model.
    """

    coords: torch.Tensor
    labels: torch.Tensor
    frame_index: int

    def __post_init__(self) -> None:
        labels = tuple(int(v) for v in self.labels.flatten().tolist())
        if labels not in ((POINT_LABEL,), BOX_LABELS):
            raise ModelInputError(f"a reference prompt is one point (labels (1,)) or one box "
                                  f"(labels (2, 3)), got labels {labels}")
        if tuple(self.coords.shape) != (len(labels), 2):
            raise ModelInputError(f"reference coords must have shape ({len(labels)}, 2) for labels "
                                  f"{labels}, got {tuple(self.coords.shape)}")
        if self.frame_index < 0:
            raise ModelInputError(f"frame_index must be >= 0, got {self.frame_index}")

    @staticmethod
    def from_sam(coords: np.ndarray | torch.Tensor, frame_index: int) -> "ReferenceInput":
        """From SAM-frame coordinates as :mod:`unipixel_ros.geometry` gives them: ``[x, y]`` is a
        point, ``[[x0, y0], [x1, y1]]`` a box (dtype kept)."""
        values = torch.as_tensor(coords)
        if values.numel() == 2:
            return ReferenceInput(values.reshape(1, 2), torch.tensor([POINT_LABEL], dtype=torch.int32), frame_index)
        if values.numel() == 4:
            return ReferenceInput(values.reshape(2, 2), torch.tensor(BOX_LABELS, dtype=torch.int32), frame_index)
        raise ModelInputError(f"SAM-frame coords must be a point [x, y] or a box [[x0, y0], [x1, y1]], "
                              f"got shape {tuple(values.shape)}")

    @staticmethod
    def point(x: float, y: float, frame_index: int) -> "ReferenceInput":
        """A positive click at SAM-frame pixel (x, y), float32 as in the published model."""
        return ReferenceInput(torch.tensor([[x, y]], dtype=torch.float32),
                              torch.tensor([POINT_LABEL], dtype=torch.int32), frame_index)

    @staticmethod
    def box(x0: int, y0: int, x1: int, y1: int, frame_index: int) -> "ReferenceInput":
        """A box with integer SAM-frame corners (top-left, bottom-right), int32 as in the published model."""
        return ReferenceInput(torch.tensor([[x0, y0], [x1, y1]], dtype=torch.int32),
                              torch.tensor(BOX_LABELS, dtype=torch.int32), frame_index)


@dataclass
class UniPixelInputs:
    """One request for a batch of one: the processor's tensors plus UniPixel's prompts.

    ``region_masks`` (bool, [grid_t, objects, grid_h / 2, grid_w / 2]) marks, per
    temporal token step and object, the merged vision tokens each ``<|mem|>`` pools;
    it is in row order, as the published model was trained with.
    """

    input_ids: torch.Tensor
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: Sequence[float] | None = None
    references: Sequence[ReferenceInput] = field(default_factory=tuple)
    region_masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.input_ids.dim() == 1:
            self.input_ids = self.input_ids.unsqueeze(0)
        if self.input_ids.dim() != 2 or self.input_ids.shape[0] != 1:
            raise ModelInputError(f"input_ids must hold one sequence, shape (1, L); got {tuple(self.input_ids.shape)}")
        if (self.pixel_values_videos is None) != (self.video_grid_thw is None):
            raise ModelInputError("pixel_values_videos and video_grid_thw come together")
        if self.video_grid_thw is not None and tuple(self.video_grid_thw.shape) != (1, 3):
            raise ModelInputError(f"one video per request: video_grid_thw must be (1, 3), "
                                  f"got {tuple(self.video_grid_thw.shape)}")
        if (self.references or self.region_masks is not None) and self.video_grid_thw is None:
            raise ModelInputError("reference prompts and region masks need a video")

    @classmethod
    def from_processor(cls, batch: Mapping[str, torch.Tensor | Sequence[float]],
                       references: Sequence[ReferenceInput] = (),
                       region_masks: torch.Tensor | None = None) -> "UniPixelInputs":
        """From a Qwen2.5-VL processor's output for one text and one video."""
        seconds = batch.get("second_per_grid_ts")
        if isinstance(seconds, torch.Tensor):
            seconds = seconds.tolist()
        return cls(input_ids=batch["input_ids"], pixel_values_videos=batch.get("pixel_values_videos"),
                   video_grid_thw=batch.get("video_grid_thw"),
                   second_per_grid_ts=None if seconds is None else list(seconds),
                   references=tuple(references), region_masks=region_masks)
