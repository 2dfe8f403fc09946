"""Deterministic test images and their on-the-wire encodings.

The camera publisher process and the tests both import this module, so a frame is
fully described by (seed, size, encoding) and the tests can recompute what the node
should hold. Encodings are built with plain NumPy indexing, independent of the
node's conversion code.
"""
from __future__ import annotations

import cv2
import numpy as np


def pattern(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth RGB image that differs per seed and per channel (JPEG keeps it recognisable)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 7 + y * 3 + seed * 11) % 256,
                     (x * 2 + seed * 5) % 256,
                     (y * 5 + seed) % 256], axis=2).astype(np.uint8)


def raw_payload(rgb: np.ndarray, encoding: str, pad: int = 0) -> tuple[bytes, int]:
    """``(data, step)`` of a sensor_msgs/Image holding ``rgb`` in ``encoding``, rows padded by ``pad``."""
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
        "mono8": rgb[..., 0],
    }.get(encoding, rgb)                   # unknown encodings: rgb bytes under a wrong label
    rows = np.ascontiguousarray(pixels).reshape(rgb.shape[0], -1)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 9, np.uint8)], axis=1)
    return rows.tobytes(), rows.shape[1]


def expected_raw(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """What the node must store for ``rgb`` sent as ``encoding``."""
    return np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb


def compressed_payload(rgb: np.ndarray, codec: str) -> bytes:
    ok, buf = cv2.imencode({"jpeg": ".jpg", "png": ".png"}[codec], np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def expected_compressed(rgb: np.ndarray, codec: str) -> np.ndarray:
    """PNG is exact; JPEG is whatever a reference decoder makes of the same bytes."""
    if codec == "png":
        return rgb
    data = np.frombuffer(compressed_payload(rgb, codec), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
