"""Label image and overlay pictures (ROS-free): exact pixel values."""
from __future__ import annotations

import numpy as np
import pytest

from unipixel_ros.rendering import MAX_LABEL_ID, OVERLAY_ALPHA, OverlayObject, RenderError, id_colour, label_image, overlay


def box(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_label_image_holds_ids_and_later_objects_win_overlaps() -> None:
    a, b = box(6, 8, 0, 0, 4, 4), box(6, 8, 2, 2, 7, 5)
    labels = label_image((6, 8), [(3, a), (40000, b)])
    assert labels.dtype == np.uint16
    expected = np.zeros((6, 8), np.uint16)
    expected[0:4, 0:4] = 3
    expected[2:5, 2:7] = 40000
    assert np.array_equal(labels, expected)


@pytest.mark.parametrize("object_id", [0, MAX_LABEL_ID + 1])
def test_label_image_refuses_ids_it_cannot_hold(object_id: int) -> None:
    with pytest.raises(RenderError, match=f"object id {object_id} does not fit"):
        label_image((2, 2), [(object_id, np.ones((2, 2), bool))])


def test_label_image_refuses_a_mask_of_another_size() -> None:
    with pytest.raises(RenderError, match=r"mask of object 1 has shape \(3, 2\), the image is \(2, 2\)"):
        label_image((2, 2), [(1, np.ones((3, 2), bool))])


def test_id_colours_are_distinct_and_stable() -> None:
    colours = [id_colour(i) for i in range(1, 21)]
    assert len(set(colours)) == 20
    assert id_colour(7) == id_colour(7)
    assert all(0 <= c <= 255 for colour in colours for c in colour)


def test_overlay_blends_inside_masks_and_keeps_the_rest_in_bgr() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = box(120, 160, 40, 50, 100, 110)
    out = overlay(image, [OverlayObject(5, "", mask)])
    assert out.dtype == np.uint8 and out.shape == image.shape
    bgr = image[..., ::-1]
    interior = box(120, 160, 45, 55, 95, 105)           # away from the outline
    blended = np.round(bgr[interior].astype(np.float32) * (1 - OVERLAY_ALPHA)
                       + np.float32(OVERLAY_ALPHA) * np.float32(id_colour(5)))
    assert np.array_equal(out[interior], blended.astype(np.uint8))
    far = box(120, 160, 0, 0, 160, 30)                  # above the tag text and outline
    assert np.array_equal(out[far], bgr[far])


def test_lost_objects_are_listed_not_drawn() -> None:
    image = np.full((60, 80, 3), 100, np.uint8)
    mask = box(60, 80, 50, 40, 70, 55)
    out = overlay(image, [OverlayObject(2, "cup", mask, lost=True)])
    assert np.array_equal(out[mask], image[mask])        # the mask area is untouched
    assert (out[:20] != 100).any()                        # the "lost: 2 cup" line at the top


def test_overlay_refuses_a_non_rgb_image() -> None:
    with pytest.raises(RenderError, match="expected an RGB uint8 image"):
        overlay(np.zeros((4, 4), np.uint8), [])
