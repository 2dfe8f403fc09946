"""Points inside masks: the distance to the outline and the deepest pixel."""
from __future__ import annotations

import numpy as np
import pytest

from unipixel_ros.mask_points import EXACT, border_distance, deepest_point


def test_the_distance_counts_to_the_nearest_outside_pixel_and_the_frame_edge() -> None:
    square = np.zeros((9, 9), bool)
    square[2:7, 2:7] = True
    distance = border_distance(square, EXACT)
    assert distance[4, 4] == pytest.approx(3.0)       # the centre of a 5 x 5 square
    assert distance[2, 2] == pytest.approx(1.0)       # a corner pixel touches the outside
    assert distance[0, 0] == 0 and distance[8, 4] == 0
    full = np.ones((5, 5), bool)                      # no pixel outside: the frame edge is the outline
    assert border_distance(full, EXACT)[2, 2] == pytest.approx(3.0)
    with pytest.raises(ValueError):
        border_distance(np.zeros((2, 4, 4), bool))


def test_the_deepest_point_is_the_pixel_farthest_inside() -> None:
    mask = np.zeros((40, 60), bool)
    mask[5:25, 10:50] = True                      # a 20 x 40 bar: the middle row, away from the ends
    x, y = deepest_point(mask)
    assert 14 <= y <= 15 and 19 <= x <= 40
    ell = np.zeros((40, 40), bool)
    ell[0:40, 0:8] = ell[32:40, 0:40] = True      # an L: its bounding-box centre is outside it
    x, y = deepest_point(ell)
    assert ell[y, x]
    edge = np.zeros((10, 10), bool)
    edge[:, :3] = True                            # touching the border: the border is an outline too
    assert deepest_point(edge)[0] == 1
    with pytest.raises(ValueError):
        deepest_point(np.zeros((4, 4), bool))
