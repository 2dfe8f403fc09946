"""3-D of masked objects from depth (ROS-free): exact results for flat shapes at known depths."""
from __future__ import annotations

import numpy as np
import pytest

from unipixel_ros.objects3d import (
    DepthError,
    DepthSettings,
    DepthSettingsError,
    decode_depth,
    encode_depth_mm,
    locate,
    matrix_quaternion,
    quaternion_matrix,
    resample_to_colour,
    transformed,
)

W, H = 64, 48
F = 50.0
K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
SETTINGS = DepthSettings(min_points=5)


def square_scene(z: float = 1.5, background: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """A 10x8 px square (u 20..29, v 10..17) at depth z in front of a wall at ``background``."""
    depth = np.full((H, W), background, np.float32)
    mask = np.zeros((H, W), bool)
    mask[10:18, 20:30] = True
    depth[mask] = z
    return depth, mask


def expected_square(z: float) -> tuple[np.ndarray, np.ndarray]:
    u = np.arange(20, 30)
    v = np.arange(10, 18)
    centroid = np.array([(u.mean() - K[0, 2]) * z / F, (v.mean() - K[1, 2]) * z / F, z])
    extent = np.array([9 * z / F, 7 * z / F, 0.0])
    return centroid, extent


def wire(depth: np.ndarray, encoding: str) -> tuple[bytes, int]:
    if encoding == "16UC1":
        values = encode_depth_mm(depth)
        return values.astype("<u2").tobytes(), depth.shape[1] * 2
    return depth.astype("<f4").tobytes(), depth.shape[1] * 4


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_flat_square_exact_centroid_and_extent(encoding: str) -> None:
    depth, mask = square_scene(1.5)
    data, step = wire(depth, encoding)
    decoded = decode_depth(encoding, H, W, step, False, data)
    obj = locate(mask, decoded, K, SETTINGS)
    centroid, extent = expected_square(1.5)
    assert obj.point_count == 80
    np.testing.assert_allclose(obj.centroid, centroid, atol=1e-6)
    np.testing.assert_allclose(obj.extent, extent, atol=1e-6)
    np.testing.assert_allclose(obj.extent_center, centroid, atol=1e-6)
    # the oriented box of a flat rectangle: its long edge along x, its thickness zero
    np.testing.assert_allclose(sorted(obj.box_size), sorted(extent), atol=1e-5)
    np.testing.assert_allclose(obj.box_center, centroid, atol=1e-6)
    assert np.linalg.det(obj.box_rotation) == pytest.approx(1.0)


def test_holes_nans_and_out_of_range_are_ignored() -> None:
    depth, mask = square_scene(2.0)
    depth[10, 20:30] = 0.0            # a row of holes
    depth[17, 20:30] = np.nan         # a row of NaNs
    depth[12, 25] = 50.0              # beyond max_m
    obj = locate(mask, depth, K, SETTINGS)
    assert obj.point_count == 80 - 20 - 1
    u, v = np.meshgrid(np.arange(20, 30), np.arange(11, 17))
    keep = ~((u == 25) & (v == 12))
    np.testing.assert_allclose(obj.centroid[:2], [(u[keep].mean() - K[0, 2]) * 2.0 / F,
                                                  (v[keep].mean() - K[1, 2]) * 2.0 / F], atol=1e-6)
    assert obj.centroid[2] == pytest.approx(2.0)


def test_edge_outliers_beyond_the_band_are_rejected() -> None:
    """A mask that bleeds one pixel onto the far wall on every side still gives the square."""
    depth, square = square_scene(1.0, background=3.0)
    bled = np.zeros_like(square)
    bled[9:19, 19:31] = True                  # 44 wall pixels around the 80 square pixels
    obj = locate(bled, depth, K, SETTINGS)
    centroid, extent = expected_square(1.0)
    assert obj.point_count == 80
    np.testing.assert_allclose(obj.centroid, centroid, atol=1e-6)
    np.testing.assert_allclose(obj.extent, extent, atol=1e-6)


def test_too_few_points_is_no_3d() -> None:
    depth, mask = square_scene(1.0)
    depth[mask] = 0.0
    depth[10, 20:23] = 1.0
    with pytest.raises(DepthError) as info:
        locate(mask, depth, K, SETTINGS)
    assert info.value.reason == "too_few_points"


def test_bad_depth_wire_data() -> None:
    with pytest.raises(DepthError) as info:
        decode_depth("8UC1", H, W, W, False, bytes(H * W))
    assert info.value.reason == "bad_encoding"
    with pytest.raises(DepthError) as info:
        decode_depth("rgb8", H, W, 3 * W, False, bytes(3 * H * W))
    assert info.value.reason == "bad_encoding"
    with pytest.raises(DepthError) as info:
        decode_depth("16UC1", H, W, 2 * W, False, bytes(2 * W * H - 1))
    assert info.value.reason == "truncated"


def test_big_endian_and_padded_rows() -> None:
    depth, _ = square_scene(1.25)
    rows = np.zeros((H, W * 2 + 6), np.uint8)
    rows[:, :W * 2] = encode_depth_mm(depth).astype(">u2").view(np.uint8).reshape(H, W * 2)
    decoded = decode_depth("16UC1", H, W, W * 2 + 6, True, rows.tobytes())
    np.testing.assert_allclose(decoded, depth, atol=1e-6)


def test_half_resolution_depth_gives_the_same_centroid() -> None:
    """Depth at half the colour size, with CameraInfos that scale, lands on the same point."""
    z = 1.2
    big_w, big_h = 128, 96
    ck = np.array([[100.0, 0, (big_w - 1) / 2], [0, 100.0, (big_h - 1) / 2], [0, 0, 1]])
    dk = np.array([[50.0, 0, (big_w / 2 - 1) / 2], [0, 50.0, (big_h / 2 - 1) / 2], [0, 0, 1]])
    mask = np.zeros((big_h, big_w), bool)
    mask[40:60, 50:80] = True
    full = np.full((big_h, big_w), 3.0, np.float32)
    full[mask] = z
    half = np.full((big_h // 2, big_w // 2), 3.0, np.float32)
    half[20:30, 25:40] = z
    at_colour = resample_to_colour(half, dk, ck, (big_h, big_w))
    a = locate(mask, full, ck, SETTINGS)
    b = locate(mask, at_colour, ck, SETTINGS)
    np.testing.assert_allclose(b.centroid, a.centroid, atol=0.01)     # within 1 cm
    np.testing.assert_allclose(b.extent, a.extent, atol=0.02)


@pytest.mark.parametrize("dk, what", [
    ([[50.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]], "focal scales differ"),
    ([[50.0, 0, 40.0], [0, 50.0, 23.5], [0, 0, 1]], "depth cx"),
])
def test_calibrations_that_are_not_a_scaling_are_refused(dk, what) -> None:
    ck = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    with pytest.raises(DepthError) as info:
        resample_to_colour(np.ones((48, 64), np.float32), np.array(dk), ck, (96, 128))
    assert info.value.reason == "intrinsics_mismatch"
    assert what in str(info.value)


def test_transform_moves_every_value() -> None:
    depth, mask = square_scene(1.5)
    obj = locate(mask, depth, K, SETTINGS)
    q = np.array([0.5, -0.5, 0.5, -0.5])          # optical -> a body frame (x forward, z up)
    r = quaternion_matrix(q)
    t = np.array([0.1, 0.2, 0.3])
    moved = transformed(obj, r, t)
    np.testing.assert_allclose(moved.centroid, r @ obj.centroid + t, atol=1e-6)
    np.testing.assert_allclose(moved.box_center, r @ obj.box_center + t, atol=1e-6)
    np.testing.assert_allclose(sorted(moved.extent), sorted(obj.extent), atol=1e-5)
    np.testing.assert_allclose(quaternion_matrix(matrix_quaternion(r)), r, atol=1e-9)


def test_settings_name_the_bad_field() -> None:
    with pytest.raises(DepthSettingsError) as info:
        DepthSettings(min_m=2.0, max_m=1.0)
    assert info.value.field == "max_m"
    with pytest.raises(DepthSettingsError) as info:
        DepthSettings(min_points=0)
    assert info.value.field == "min_points"
