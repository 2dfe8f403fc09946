"""Exact values for the pixel <-> SAM-frame transforms, SAM preprocessing and mask output."""
import numpy as np
import pytest
import torch

from unipixel_ros.geometry import (IMAGENET_MEAN, IMAGENET_STD, GeometryError, PixelBox, binarize_logits,
                                   box_to_sam, logits_to_masks, mask_to_box, mask_to_sam_box, mask_to_sam_frame,
                                   mask_to_sam_point, point_to_sam, sam_preprocess, temporal_coordinate,
                                   upsample_mask_logits)

torch.set_num_threads(1)


def test_point_scales_each_axis_by_its_own_size_in_float32():
    p = point_to_sam(100, 50, width=640, height=480)
    assert p.dtype == np.float32
    np.testing.assert_array_equal(p, np.array([120.0, 80.0], dtype=np.float32))


def test_point_on_odd_sized_image():
    p = point_to_sam(1, 1, width=5, height=3)
    np.testing.assert_array_equal(p, np.array([np.float32(153.6), np.float32(256.0)]))
    np.testing.assert_array_equal(point_to_sam(2.5, 1.5, width=5, height=3), np.float32([384.0, 384.0]))


def test_box_corners_are_truncated_int32_not_rounded():
    box = box_to_sam(100, 50, 639, 479, width=640, height=480)
    assert box.dtype == np.int32
    # 639 * 1.2 = 766.8 and 479 * 1.6 = 766.4: truncated, not rounded to 767.
    np.testing.assert_array_equal(box, [[120, 80], [766, 766]])


def test_box_on_odd_sized_image_and_clamping_to_last_sam_pixel():
    np.testing.assert_array_equal(box_to_sam(1, 1, 4, 2, width=5, height=3), [[153, 256], [614, 512]])
    np.testing.assert_array_equal(box_to_sam(0, 0, 5, 3, width=5, height=3), [[0, 0], [767, 767]])


def test_non_positive_size_is_rejected():
    with pytest.raises(GeometryError, match="image size must be positive"):
        point_to_sam(0, 0, width=0, height=3)


def test_mask_prompt_box_includes_bilinear_bleed_of_upscaling():
    mask = np.zeros((48, 64), bool)
    mask[5:8, 10:20] = True
    # x: 64 -> 768 (x12). Output column i samples source (i + 0.5) / 12 - 0.5 and is > 0 when that
    # lies strictly between columns 9 and 20: i in [114, 245]. y: 48 -> 768 (x16), rows 5..7: [72, 135].
    np.testing.assert_array_equal(mask_to_sam_box(mask), [[114, 72], [245, 135]])
    assert mask_to_sam_box(mask).dtype == np.int32


def test_mask_prompt_box_at_sam_size_is_the_mask_extent():
    mask = np.zeros((768, 768), bool)
    mask[10:20, 30:40] = True
    np.testing.assert_array_equal(mask_to_sam_box(mask), [[30, 10], [39, 19]])


def test_mask_prompt_matches_sam2_reference_ops():
    from sam2.utils.misc import mask_to_box as sam2_mask_to_box
    from torchvision.transforms.functional import resize

    rng = np.random.default_rng(0)
    mask = np.zeros((37, 53), bool)
    mask[rng.integers(3, 30), rng.integers(3, 45)] = True
    mask[20:25, 30:33] = True
    reference = resize(torch.from_numpy(mask).float()[None, None], [768, 768]) > 0
    assert torch.equal(mask_to_sam_frame(mask), reference[0, 0])
    expected = sam2_mask_to_box(reference)[0, 0].reshape(2, 2).numpy()
    np.testing.assert_array_equal(mask_to_sam_box(mask), expected)


def test_mask_prompt_point_is_most_interior_pixel_first_in_row_order():
    mask = np.zeros((768, 768), bool)
    mask[100:200, 300:500] = True
    # Distance to the nearest outside pixel peaks at 50 on rows 149 and 150, columns 349..450.
    p = mask_to_sam_point(mask)
    assert p.dtype == np.float32
    np.testing.assert_array_equal(p, [349.0, 149.0])


def test_mask_prompt_point_matches_sam2_center_sampling():
    from sam2.modeling.sam2_utils import get_next_point

    mask = np.zeros((45, 61), bool)
    mask[10:30, 5:25] = True
    mask[12:40, 40:58] = True
    sam_mask = mask_to_sam_frame(mask)[None, None]
    points, labels = get_next_point(sam_mask, None, "center")
    assert labels.item() == 1
    np.testing.assert_array_equal(mask_to_sam_point(mask), points[0, 0].numpy())


def test_empty_mask_prompt_has_no_box_or_point():
    with pytest.raises(GeometryError, match="mask is empty"):
        mask_to_sam_box(np.zeros((4, 4), bool))
    with pytest.raises(GeometryError, match="mask is empty"):
        mask_to_sam_point(np.zeros((4, 4), bool))


@pytest.mark.parametrize("position, num_sampled, expected", [
    (0, 1, 0.0),      # single image: padded to 2 frames
    (2, 5, 0.4),      # 5 -> 6 frames: 2 / 5
    (4, 5, 0.8),
    (3, 4, 1.0),
    (15, 16, 1.0),
    (7, 16, 7 / 15),
])
def test_temporal_coordinate_is_position_over_even_count_minus_one(position, num_sampled, expected):
    assert temporal_coordinate(position, num_sampled) == float(np.float32(expected))


def test_temporal_coordinate_rejects_position_outside_sample():
    with pytest.raises(GeometryError, match="outside the 5 sampled frames"):
        temporal_coordinate(5, 5)


def test_sam_preprocess_constant_frame_exact_values():
    frame = np.empty((3, 5, 3), np.uint8)
    frame[:] = (255, 0, 128)
    out = sam_preprocess(frame, size=8)
    assert out.shape == (1, 3, 8, 8) and out.dtype == torch.float32
    expected = [(1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (0.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]
    for c in range(3):
        torch.testing.assert_close(out[0, c], torch.full((8, 8), expected[c]), rtol=0, atol=1e-6)


def test_sam_preprocess_matches_torchvision_bilinear_antialias_pipeline():
    from torchvision.transforms import Normalize, Resize

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
    video = torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 255
    expected = Normalize(IMAGENET_MEAN, IMAGENET_STD)(Resize((64, 64), antialias=True)(video))
    torch.testing.assert_close(sam_preprocess(frames, size=64), expected, rtol=0, atol=1e-6)


def test_sam_preprocess_rejects_non_rgb():
    with pytest.raises(GeometryError, match=r"expected RGB frames \[T, H, W, 3\]"):
        sam_preprocess(np.zeros((2, 4, 4), np.uint8))


def test_upsample_logits_bilinear_half_pixel_and_strict_threshold():
    logits = torch.tensor([[-1.0, 1.0], [1.0, 3.0]])
    up = upsample_mask_logits(logits, 4, 4)
    expected = torch.tensor([[-1.0, -0.5, 0.5, 1.0],
                             [-0.5, 0.0, 1.0, 1.5],
                             [0.5, 1.0, 2.0, 2.5],
                             [1.0, 1.5, 2.5, 3.0]])
    torch.testing.assert_close(up, expected)
    assert binarize_logits(up).tolist() == (expected > 0).tolist()
    assert not binarize_logits(up)[1, 1]  # exactly 0 is background


def test_upsample_logits_to_odd_non_square_size_keeps_leading_dims():
    logits = torch.tensor([[-1.0, 1.0]]).expand(2, 3, 1, 2)
    masks = logits_to_masks(logits, 1, 3)
    assert masks.shape == (2, 3, 1, 3) and masks.dtype == torch.bool
    # Columns sample source x = -1/6 (clamped to 0), 0.5, 7/6 (clamped to 1): logits -1, 0, 1.
    torch.testing.assert_close(upsample_mask_logits(logits, 1, 3)[0, 0], torch.tensor([[-1.0, 0.0, 1.0]]))
    assert masks[1, 2, 0].tolist() == [False, False, True]


def test_upsample_logits_at_target_size_is_unchanged():
    logits = torch.randn(2, 5, 7)
    assert upsample_mask_logits(logits, 5, 7) is logits


def test_mask_to_box_is_tight_and_inclusive():
    mask = np.zeros((7, 5), bool)
    mask[2, 1] = True
    mask[4, 3] = True
    assert mask_to_box(mask) == PixelBox(x_offset=1, y_offset=2, width=3, height=3)
    assert mask_to_box(torch.from_numpy(mask)) == PixelBox(1, 2, 3, 3)
    single = np.zeros((3, 9), bool)
    single[2, 8] = True
    assert mask_to_box(single) == PixelBox(8, 2, 1, 1)


def test_mask_to_box_of_empty_mask_is_all_zero():
    assert mask_to_box(np.zeros((6, 4), bool)) == PixelBox(0, 0, 0, 0)


def test_mask_to_box_rejects_stacks():
    with pytest.raises(GeometryError, match="expected one H x W mask"):
        mask_to_box(np.zeros((2, 6, 4), bool))
