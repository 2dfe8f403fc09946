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


def ink_columns(picture: np.ndarray, rows: slice) -> np.ndarray:
    """Columns holding label text (bright pixels) in ``rows`` of a picture drawn on black."""
    return np.nonzero((picture[rows].max(axis=2) > 60).any(axis=0))[0]


def gaps(columns: np.ndarray) -> list[int]:
    """Widths of the inkless runs between the first and last inked column."""
    return [int(b - a - 1) for a, b in zip(columns[:-1], columns[1:]) if b - a > 1]


@pytest.mark.parametrize("shape", [(240, 320), (480, 640)])
def test_label_words_are_drawn_with_a_space_between_them(shape: tuple[int, int]) -> None:
    h, w = shape
    mask = box(h, w, w // 4, h // 2, w // 2, h - 10)          # room above it for the tag
    out = overlay(np.zeros((h, w, 3), np.uint8), [OverlayObject(3, "red circle", mask)])
    columns = ink_columns(out, slice(0, h // 2 - 3))           # above the mask and its outline
    assert columns.size and columns.min() >= w // 4 - 1
    wide = [g for g in gaps(columns) if g >= 3]
    assert len(wide) == 2, f"expected a gap at each of the 2 spaces of '3 red circle', got gaps {gaps(columns)}"


def label_crop(picture: np.ndarray, rows: slice) -> np.ndarray:
    band = picture[rows]
    columns = ink_columns(picture, rows)
    lines = np.nonzero((band.max(axis=2) > 60).any(axis=1))[0]
    return band[lines.min():lines.max() + 1, columns.min():columns.max() + 1]


def test_a_label_at_the_right_edge_is_moved_inside_the_image_whole() -> None:
    h, w = 240, 320
    image = np.zeros((h, w, 3), np.uint8)
    middle = overlay(image, [OverlayObject(4, "blue square", box(h, w, 100, 150, 130, 200))])
    edge = overlay(image, [OverlayObject(4, "blue square", box(h, w, w - 12, 150, w, 200))])
    rows = slice(0, 149)                                       # above the masks' outlines
    assert ink_columns(edge, rows).max() < w - 1               # a margin: nothing reaches the edge
    assert np.array_equal(label_crop(edge, rows), label_crop(middle, rows))   # the same, uncut label


def test_a_label_at_the_top_edge_is_drawn_whole_inside_the_image() -> None:
    h, w = 240, 320
    image = np.zeros((h, w, 3), np.uint8)
    obj = OverlayObject(4, "blue square", box(h, w, 90, 0, 300, 60))
    out = overlay(image, [obj], alpha=0.0)                     # alpha 0: the mask area stays black
    reference = overlay(image, [OverlayObject(4, "blue square", box(h, w, 100, 150, 130, 210))], alpha=0.0)
    inside = out[3:55, 91:295]                                 # inside the mask, clear of its outline
    assert np.array_equal(label_crop(inside, slice(None)), label_crop(reference, slice(0, 149)))


def test_a_label_wider_than_the_image_is_shortened_with_an_ellipsis() -> None:
    h, w = 120, 160
    long_label = "the large red circle that is partly behind the green square on the left"
    out = overlay(np.zeros((h, w, 3), np.uint8), [OverlayObject(7, long_label, box(h, w, 20, 60, 60, 110))])
    columns = ink_columns(out, slice(0, 55))
    assert 0 < columns.min() and columns.max() < w - 1         # inside, with a margin on both sides
    assert columns.max() - columns.min() > w // 2              # shortened, not dropped
    # The ellipsis: the label ends with three dots, each a run of a few columns inked only
    # in a few rows.
    ink = out[:55].max(axis=2) > 60
    starts = [columns[0], *(b for a, b in zip(columns[:-1], columns[1:]) if b - a > 1)]
    ends = [*(a for a, b in zip(columns[:-1], columns[1:]) if b - a > 1), columns[-1]]
    for start, end in zip(starts[-3:], ends[-3:]):
        rows = np.nonzero(ink[:, start:end + 1].any(axis=1))[0]
        assert end - start <= 2 and rows.max() - rows.min() <= 2, \
            f"expected '...' at the end of the label, got column runs {list(zip(starts, ends))}"


def test_the_lost_list_fits_the_image() -> None:
    h, w = 60, 80
    objects = [OverlayObject(i, f"object number {i}", np.zeros((h, w), bool), lost=True) for i in range(1, 6)]
    out = overlay(np.zeros((h, w, 3), np.uint8), objects)
    columns = ink_columns(out, slice(0, h))
    assert columns.size and 0 < columns.min() and columns.max() < w - 1
