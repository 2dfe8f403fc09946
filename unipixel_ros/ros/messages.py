"""Results and prompts <-> unipixel_ros messages.

Every output copies its source frame's stamp and frame_id: a mask image's header is
its frame's, an ``ObjectMasks`` header is its newest frame's. Masks travel as ``mono8``
(255 = object, 0 = background), label images as ``mono16`` (little-endian), overlays as
``bgr8``. Boxes come from :func:`unipixel_ros.geometry.mask_to_box`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from unipixel_ros.frames import NS_PER_S
from unipixel_ros.geometry import mask_to_box
from unipixel_ros.msg import Object3D, ObjectInfo, ObjectMasks, StageTiming
from unipixel_ros.msg import VisualPrompt as VisualPromptMsg
from unipixel_ros.object_store import StoredObject
from unipixel_ros.prompts import BoxPrompt, MaskPrompt, MemoryPrompt, PointPrompt, PromptError, VisualPrompt

MASK_ENCODINGS: tuple[str, ...] = ("mono8", "8UC1")
# encoding -> (dtype on the wire, channels)
_IMAGE_LAYOUTS: dict[str, tuple[str, int]] = {"mono8": ("u1", 1), "mono16": ("<u2", 1), "bgr8": ("u1", 3)}


def time_msg(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=time_msg(stamp_ns), frame_id=frame_id)


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """An Image holding ``pixels`` (H x W for mono8/mono16, H x W x 3 for bgr8), rows unpadded."""
    dtype, channels = _IMAGE_LAYOUTS[encoding]
    wire = np.ascontiguousarray(pixels, dtype=dtype)
    expected_ndim = 2 if channels == 1 else 3
    if wire.ndim != expected_ndim:
        raise ValueError(f"{encoding} image needs {expected_ndim} dimensions, got shape {wire.shape}")
    height, width = wire.shape[:2]
    msg = Image(header=header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                is_bigendian=0, step=width * channels * wire.itemsize)
    msg.data = wire.tobytes()
    return msg


def mask_msg(mask: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """H x W bool mask -> mono8 Image (255 = object)."""
    return image_msg(np.where(np.asarray(mask, dtype=bool), np.uint8(255), np.uint8(0)), "mono8", stamp_ns, frame_id)


def mask_from_msg(msg: Image) -> np.ndarray:
    """mono8 / 8UC1 Image -> H x W bool mask (non-zero = object); raises PromptError naming the fault."""
    if msg.encoding not in MASK_ENCODINGS:
        raise PromptError(f"mask image encoding '{msg.encoding}' is not supported (use {' or '.join(MASK_ENCODINGS)})")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise PromptError(f"mask image is {width}x{height} pixels")
    if step < width or len(msg.data) != step * height:
        raise PromptError(f"mask image data has {len(msg.data)} bytes, expected step*height = {step}*{height} "
                          f"with step >= width {width}")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)
    return rows[:, :width] != 0


def roi_msg(mask: np.ndarray) -> RegionOfInterest:
    box = mask_to_box(mask)
    return RegionOfInterest(x_offset=box.x_offset, y_offset=box.y_offset, width=box.width, height=box.height)


def object_masks_msg(object_id: int, label: str, score: float, lost: bool,
                     frames: Sequence[tuple[int, str, np.ndarray]], object3d: Object3D | None = None) -> ObjectMasks:
    """One object's masks on frames given as (stamp_ns, frame_id, mask), oldest first, and its
    3-D on the newest one (none given: point_count 0, status "no depth")."""
    if not frames:
        raise ValueError(f"object {object_id} has no masks")
    newest_stamp, newest_frame_id, _ = frames[-1]
    if object3d is None:
        object3d = Object3D(header=header(newest_stamp, newest_frame_id), status="no depth")
    return ObjectMasks(
        header=header(newest_stamp, newest_frame_id), id=int(object_id), label=label, score=float(score),
        lost=bool(lost), stamps=[time_msg(s) for s, _, _ in frames],
        masks=[mask_msg(m, s, f) for s, f, m in frames], boxes=[roi_msg(m) for _, _, m in frames],
        object3d=object3d)


def timing_msgs(timings: Mapping[str, float]) -> list[StageTiming]:
    return [StageTiming(stage=stage, seconds=float(seconds)) for stage, seconds in timings.items()]


def object_info_msg(obj: StoredObject) -> ObjectInfo:
    info = ObjectInfo(id=obj.object_id, camera=obj.camera, label=obj.label, lost=obj.lost,
                      frames_stored=len(obj.record.stamps))
    if obj.first_seen_ns is not None:
        info.first_seen = time_msg(obj.first_seen_ns)
    if obj.last_seen_ns is not None:
        info.last_seen = time_msg(obj.last_seen_ns)
    return info


def prompt_from_msg(msg: VisualPromptMsg, frame_index: int, memory_id: int = 0) -> VisualPrompt:
    """A VisualPrompt message on window frame ``frame_index``; MEMORY prompts take the bank id
    ``memory_id`` the caller resolved from the message's node-wide id."""
    k = int(msg.object_index)
    if msg.type == VisualPromptMsg.POINT:
        return PointPrompt(object_index=k, frame_index=frame_index, x=float(msg.x0), y=float(msg.y0),
                           positive=not msg.negative)
    if msg.type == VisualPromptMsg.BOX:
        return BoxPrompt(object_index=k, frame_index=frame_index, x0=float(msg.x0), y0=float(msg.y0),
                         x1=float(msg.x1), y1=float(msg.y1))
    if msg.type == VisualPromptMsg.MASK:
        return MaskPrompt(object_index=k, frame_index=frame_index, mask=mask_from_msg(msg.mask))
    if msg.type == VisualPromptMsg.MEMORY:
        return MemoryPrompt(object_index=k, memory_id=memory_id)
    raise PromptError(f"prompt for [{k}]: unknown type {msg.type} (POINT=0, BOX=1, MASK=2, MEMORY=3)")
