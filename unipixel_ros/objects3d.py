"""Objects in 3-D: a mask plus the registered depth under it -> points, centroid and boxes.

ROS-free (the ROS layer converts messages and calls it; tests and benches use it directly).

Conventions
-----------
* Depth is metres, ``float32``, one value per pixel; 0, NaN, inf and values outside
  ``[min_m, max_m]`` mean "no measurement" and are ignored. Wire formats are decoded by
  :func:`decode_depth`: ``16UC1`` is millimetres (RealSense, Kinect), ``32FC1`` metres.
* Points are in the camera's optical frame (x right, y down, z forward, metres), from the
  pinhole model of the colour camera: ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``
  with pixel centres at integer ``(u, v)``, the convention of the masks.
* Depth registered to the colour image (each depth pixel seen along the colour pixel's ray,
  like RealSense ``aligned_depth_to_color``) but of another resolution is resampled onto the
  colour grid through both calibrations (:func:`resample_to_colour`); that needs the two to
  differ by a pure scaling, which is checked.

Outliers: a mask's edge bleeds onto the background (and a thin object lets the far wall
through), so a depth histogram under a mask has the object's peak plus stragglers. The
rule is a band around the median: points whose depth is within ``band_m`` of the median
depth of the valid points are kept, the rest dropped. The median follows the majority of
the mask, which is the object whenever the mask is mostly right; ``band_m`` must be wider
than the object's own depth span (an object seen at a slant). Fewer than ``min_points``
kept points give no 3-D (never a guess from a few pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEPTH_ENCODINGS: tuple[str, ...] = ("16UC1", "mono16", "32FC1")
MM_PER_M = 1000.0
# Relative and absolute slack of the pure-scaling check between two calibrations.
SCALE_TOLERANCE = 0.02
PRINCIPAL_TOLERANCE_PX = 1.5


class DepthError(ValueError):
    """A depth image that cannot be used; ``reason`` is a stable counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class DepthSettingsError(ValueError):
    """A 3-D setting out of range; ``field`` names the :class:`DepthSettings` field."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(f"{field_name}: {why}")
        self.field = field_name
        self.why = why


@dataclass(frozen=True)
class DepthSettings:
    """The ``depth.*`` parameters: valid range, outlier band, minimum support, pairing."""

    min_m: float = 0.1
    max_m: float = 10.0
    band_m: float = 0.15
    min_points: int = 20
    max_stamp_offset_s: float = 0.05
    target_frame: str = ""

    def __post_init__(self) -> None:
        for name in ("min_m", "max_m", "band_m", "max_stamp_offset_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise DepthSettingsError(name, f"must be a finite number >= 0, got {value!r}")
        if not self.max_m > self.min_m:
            raise DepthSettingsError("max_m", f"must be greater than min_m ({self.min_m}), got {self.max_m}")
        if not self.band_m > 0:
            raise DepthSettingsError("band_m", f"must be > 0, got {self.band_m}")
        if isinstance(self.min_points, bool) or not isinstance(self.min_points, int) or self.min_points < 1:
            raise DepthSettingsError("min_points", f"must be an integer >= 1, got {self.min_points!r}")
        if not isinstance(self.target_frame, str):
            raise DepthSettingsError("target_frame", f"must be a string, got {self.target_frame!r}")

    @property
    def max_stamp_offset_ns(self) -> int:
        return int(round(self.max_stamp_offset_s * 1e9))


@dataclass(frozen=True)
class Object3D:
    """One object's points on one frame and what is derived from them (metres, one frame)."""

    points: np.ndarray            # [N, 3] float32
    centroid: np.ndarray          # [3] mean of the points
    extent_center: np.ndarray     # [3] centre of the axis-aligned box
    extent: np.ndarray            # [3] axis-aligned size (max - min per axis)
    box_center: np.ndarray        # [3] centre of the oriented box
    box_rotation: np.ndarray      # [3, 3] box axes as columns (a rotation, det +1)
    box_size: np.ndarray          # [3] oriented box edge lengths along its axes

    @property
    def point_count(self) -> int:
        return int(self.points.shape[0])

    @property
    def box_quaternion(self) -> np.ndarray:
        """The box orientation as a unit quaternion (x, y, z, w)."""
        return matrix_quaternion(self.box_rotation)


def decode_depth(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
                 data: bytes | bytearray | memoryview) -> np.ndarray:
    """A depth image's wire fields -> ``float32`` metres [H, W] (a fresh, compact array).

    Raises :class:`DepthError` with reason ``bad_encoding`` (not 16UC1/mono16/32FC1),
    ``truncated`` (fewer bytes than rows of ``step``) or ``bad_size``.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise DepthError("bad_encoding", f"depth encoding '{encoding}' is not supported "
                         f"(use 16UC1 in millimetres or 32FC1 in metres)")
    height, width, step = int(height), int(width), int(step)
    itemsize = 4 if encoding == "32FC1" else 2
    if height <= 0 or width <= 0 or step < width * itemsize:
        raise DepthError("bad_size", f"depth image is {width}x{height} with step {step} "
                         f"(needs step >= {width * itemsize})")
    if len(data) < step * height:
        raise DepthError("truncated", f"depth data has {len(data)} bytes, expected step*height = "
                         f"{step}*{height} = {step * height}")
    dtype = np.dtype(">f4" if itemsize == 4 else ">u2") if is_bigendian else np.dtype("<f4" if itemsize == 4
                                                                                       else "<u2")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    values = rows[:, :width * itemsize].copy().view(dtype).reshape(height, width)
    if itemsize == 2:
        return (values.astype(np.float32) / np.float32(MM_PER_M))
    return values.astype(np.float32)


def encode_depth_mm(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> 16UC1 millimetres (rounded; invalid and out-of-range values become 0)."""
    mm = np.where(np.isfinite(depth_m), np.rint(np.asarray(depth_m, np.float64) * MM_PER_M), 0.0)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)


def resample_to_colour(depth_m: np.ndarray, depth_k: np.ndarray, colour_k: np.ndarray,
                       colour_shape: tuple[int, int]) -> np.ndarray:
    """Registered depth of another resolution onto the colour pixel grid (nearest depth pixel).

    Both images see along the same rays (registered), so they differ by a pure scaling of
    the pixel grid: ``s = fx_d / fx_c`` (and ``fy_d / fy_c``). The check says which
    calibration value breaks it: unequal x and y scales (another aspect), an image size
    that is not the colour size scaled, or a principal point that does not scale with it.
    Raises :class:`DepthError` with reason ``intrinsics_mismatch``.
    """
    dh, dw = depth_m.shape
    ch, cw = colour_shape
    dk, ck = np.asarray(depth_k, float), np.asarray(colour_k, float)
    if not (ck[0, 0] > 0 and ck[1, 1] > 0 and dk[0, 0] > 0 and dk[1, 1] > 0):
        raise DepthError("intrinsics_mismatch", "a CameraInfo has a zero focal length (uncalibrated)")
    sx, sy = dk[0, 0] / ck[0, 0], dk[1, 1] / ck[1, 1]
    problems = []
    if abs(sx - sy) > SCALE_TOLERANCE * max(sx, sy):
        problems.append(f"focal scales differ: fx {sx:.4f}, fy {sy:.4f} (another aspect ratio)")
    if abs(dw - cw * sx) > max(1.0, SCALE_TOLERANCE * dw) or abs(dh - ch * sy) > max(1.0, SCALE_TOLERANCE * dh):
        problems.append(f"depth size {dw}x{dh} is not the colour size {cw}x{ch} scaled by the focal ratio "
                        f"({cw * sx:.1f}x{ch * sy:.1f})")
    for axis, name, s in ((0, "cx", sx), (1, "cy", sy)):
        expected = (ck[axis, 2] + 0.5) * s - 0.5
        if abs(dk[axis, 2] - expected) > PRINCIPAL_TOLERANCE_PX:
            problems.append(f"depth {name} {dk[axis, 2]:.2f} px is not the colour {name} {ck[axis, 2]:.2f} scaled "
                            f"({expected:.2f})")
    if problems:
        raise DepthError("intrinsics_mismatch", "depth and colour CameraInfos are not a pure scaling of one "
                         "another: " + "; ".join(problems))
    cols = np.rint((np.arange(cw) - ck[0, 2]) * sx + dk[0, 2]).astype(np.intp)
    rows = np.rint((np.arange(ch) - ck[1, 2]) * sy + dk[1, 2]).astype(np.intp)
    np.clip(cols, 0, dw - 1, out=cols)
    np.clip(rows, 0, dh - 1, out=rows)
    return depth_m[rows[:, None], cols[None, :]]


def mask_points(mask: np.ndarray, depth_m: np.ndarray, k: np.ndarray, settings: DepthSettings) -> np.ndarray:
    """The [N, 3] float32 optical-frame points under ``mask`` after the range and band rules."""
    if mask.shape != depth_m.shape:
        raise DepthError("size_mismatch", f"mask is {mask.shape[1]}x{mask.shape[0]}, depth "
                         f"{depth_m.shape[1]}x{depth_m.shape[0]}")
    v, u = np.nonzero(mask)
    z = depth_m[v, u]
    valid = np.isfinite(z) & (z >= settings.min_m) & (z <= settings.max_m) & (z > 0)
    if not valid.any():
        return np.zeros((0, 3), np.float32)
    u, v, z = u[valid], v[valid], z[valid]
    median = np.median(z)
    keep = np.abs(z - median) <= settings.band_m
    u, v, z = u[keep].astype(np.float64), v[keep].astype(np.float64), z[keep].astype(np.float64)
    fx, fy, cx, cy, skew = k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[0, 1]
    y = (v - cy) * z / fy
    x = ((u - cx) * z - skew * y) / fx
    return np.stack([x, y, z], axis=1).astype(np.float32)


def describe_points(points: np.ndarray) -> Object3D:
    """Centroid, axis-aligned box and PCA oriented box of [N >= 1, 3] points."""
    p = np.asarray(points, np.float64)
    centroid = p.mean(axis=0)
    lo, hi = p.min(axis=0), p.max(axis=0)
    centred = p - centroid
    if p.shape[0] >= 3:
        _, vectors = np.linalg.eigh(centred.T @ centred)
        axes = vectors[:, ::-1]                      # largest spread first
    else:
        axes = np.eye(3)
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]
    local = centred @ axes
    llo, lhi = local.min(axis=0), local.max(axis=0)
    return Object3D(points=np.asarray(points, np.float32), centroid=centroid, extent_center=(lo + hi) / 2,
                    extent=hi - lo, box_center=centroid + axes @ ((llo + lhi) / 2), box_rotation=axes,
                    box_size=lhi - llo)


def locate(mask: np.ndarray, depth_m: np.ndarray, k: np.ndarray, settings: DepthSettings) -> Object3D:
    """The object under ``mask`` in 3-D; raises :class:`DepthError` (``too_few_points``) when the
    valid depth under it is below ``settings.min_points``."""
    points = mask_points(mask, depth_m, k, settings)
    if points.shape[0] < settings.min_points:
        raise DepthError("too_few_points", f"{points.shape[0]} valid depth points under the mask "
                         f"(depth.min_points = {settings.min_points})")
    return describe_points(points)


def transformed(obj: Object3D, rotation: np.ndarray, translation: np.ndarray) -> Object3D:
    """The same object in another frame (``p' = R p + t``); the axis-aligned box is recomputed there."""
    points = obj.points.astype(np.float64) @ np.asarray(rotation, float).T + np.asarray(translation, float)
    out = describe_points(points)
    # The oriented box is rigid: carry it over instead of refitting (same box, same axes).
    r = np.asarray(rotation, float)
    return Object3D(points=out.points, centroid=out.centroid, extent_center=out.extent_center, extent=out.extent,
                    box_center=r @ obj.box_center + translation, box_rotation=r @ obj.box_rotation,
                    box_size=obj.box_size)


def quaternion_matrix(xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w); normalised first, a zero one raises ValueError."""
    qx, qy, qz, qw = (float(v) for v in xyzw)
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if not norm > 0:
        raise ValueError("the rotation quaternion is zero")
    qx, qy, qz, qw = qx / norm, qy / norm, qz / norm, qw / norm
    return np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)]])


def matrix_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w, with w >= 0) of a rotation matrix."""
    m = np.asarray(rotation, float)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax([m[0, 0], m[1, 1], m[2, 2]]))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    out = np.array(q)
    out /= np.linalg.norm(out)
    return -out if out[3] < 0 else out
