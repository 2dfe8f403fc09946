"""Click geometry without a ROS graph: pinhole projection, transforms, two-click boxes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unipixel_ros.ros.clicks import BoxCorners, ClickError, project_to_pixel, transform_point

K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("point, pixel", [
    ((0.0, 0.0, 2.0), (320.0, 240.0)),            # on the optical axis: the principal point
    ((0.2, -0.1, 1.0), (420.0, 200.0)),           # 500 * 0.2 + 320, 400 * -0.1 + 240
    ((0.4, 0.3, 4.0), (370.0, 270.0)),            # depth divides
])
def test_projection_through_the_pinhole(point, pixel) -> None:
    assert project_to_pixel(np.array(point), K) == pytest.approx(pixel)


@pytest.mark.parametrize("z", [0.0, -1.0])
def test_points_not_in_front_are_refused(z: float) -> None:
    with pytest.raises(ClickError, match="not in front of the camera"):
        project_to_pixel(np.array([0.1, 0.1, z]), K)


def test_transform_rotates_then_translates() -> None:
    half = math.sqrt(0.5)
    # 90 degrees about z: x -> y; then shift by (1, 2, 3)
    moved = transform_point(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, half, half]), np.array([1.0, 0.0, 0.0]))
    assert moved == pytest.approx([1.0, 3.0, 3.0])
    # body frame (x forward, y left, z up) -> optical frame (z forward, x right, y down)
    to_optical = np.array([0.5, -0.5, 0.5, 0.5])
    assert transform_point(np.zeros(3), to_optical, np.array([2.0, 0.0, 0.0])) == pytest.approx([0.0, 0.0, 2.0])
    assert transform_point(np.zeros(3), to_optical, np.array([0.0, 1.0, 0.0])) == pytest.approx([-1.0, 0.0, 0.0])
    assert transform_point(np.zeros(3), to_optical, np.array([0.0, 0.0, 1.0])) == pytest.approx([0.0, -1.0, 0.0])
    with pytest.raises(ClickError, match="quaternion is zero"):
        transform_point(np.zeros(3), np.zeros(4), np.ones(3))


def test_two_clicks_make_a_box_per_camera_within_the_timeout() -> None:
    corners = BoxCorners(timeout_s=5.0)
    assert corners.click("a", 30.0, 40.0, now_s=0.0) is None
    assert corners.click("b", 1.0, 1.0, now_s=0.5) is None            # another camera's own first corner
    assert corners.click("a", 10.0, 50.0, now_s=1.0) == (10.0, 40.0, 30.0, 50.0)
    assert corners.click("a", 5.0, 5.0, now_s=2.0) is None            # a new box starts
    assert corners.click("a", 9.0, 9.0, now_s=8.0) is None            # too late: restarts from here
    assert corners.click("a", 1.0, 2.0, now_s=9.0) == (1.0, 2.0, 9.0, 9.0)
