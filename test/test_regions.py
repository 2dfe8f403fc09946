"""Region masks over merged vision tokens and the window-order <|mem|> pooling."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unipixel_ros.regions import (RegionError, frame_pair_token_slices, merged_window_index, object_frame_pairs,
                                  pair_masks, pool_region_features, region_cells, region_token_masks)

torch.set_num_threads(1)


def reference_region_masks(masks: torch.Tensor, grid) -> torch.Tensor:
    """The checkpoints' evaluation ops, step by step: pair by 1-D max pooling, fill empty objects,
    torchvision resize to the processor size, 28 x 28 max pooling, > 0."""
    from torchvision.transforms.functional import resize

    m = masks.float()
    n, o, h, w = m.shape
    if n % 2:
        m = torch.cat((m, m[-1, None]))
    m = F.max_pool1d(m.flatten(1).transpose(-1, -2), kernel_size=2, stride=2).transpose(-1, -2)
    m = m.view(-1, o, h, w)
    for k in range(o):
        if (m[:, k] == 0).all():
            m[:, k] = 1
    m = resize(m, [grid[1] * 14, grid[2] * 14])
    return F.max_pool2d(m, kernel_size=28, stride=28) > 0


def test_pairs_are_unions_and_odd_count_repeats_last_frame():
    masks = np.zeros((3, 1, 2, 2), bool)
    masks[0, 0, 0, 0] = masks[1, 0, 1, 1] = masks[2, 0, 0, 1] = True
    paired = pair_masks(masks)
    assert paired.shape == (2, 1, 2, 2)
    assert paired[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert paired[1, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_object_empty_on_every_frame_covers_everything():
    masks = np.zeros((4, 2, 3, 5), bool)
    masks[1, 0, 2, 4] = True
    assert object_frame_pairs(masks) == [(0,), (0, 1)]
    assert pair_masks(masks)[:, 1].min() == 1.0


def test_token_mask_at_processor_size_is_cell_occupancy():
    grid = (2, 4, 6)  # 56 x 84 pixels, 2 x 3 merged tokens per pair
    masks = np.zeros((3, 1, 56, 84), bool)
    masks[0, 0, 0, 0] = True
    masks[1, 0, 55, 83] = True
    masks[2, 0, 30, 57] = True
    tokens = region_token_masks(masks, grid)
    assert tokens.shape == (2, 1, 2, 3) and tokens.dtype == torch.bool
    assert tokens[0, 0].tolist() == [[True, False, False], [False, False, True]]
    assert tokens[1, 0].tolist() == [[False, False, False], [False, False, True]]


def test_token_mask_on_odd_size_includes_interpolation_bleed():
    grid = (1, 4, 6)  # 57 x 85 camera pixels -> 56 x 84
    centre = np.zeros((1, 1, 57, 85), bool)
    centre[0, 0, 30, 57] = True
    assert region_token_masks(centre, grid)[0, 0].tolist() == [[False, False, False], [False, False, True]]
    corner = np.zeros((1, 1, 57, 85), bool)
    corner[0, 0, 28, 28] = True  # lands on the corner shared by four cells after resizing
    assert region_token_masks(corner, grid)[0, 0].tolist() == [[True, True, False], [True, True, False]]


def test_token_masks_match_the_checkpoints_ops_on_random_masks():
    rng = np.random.default_rng(0)
    for n, h, w, grid in [(5, 37, 53, (3, 20, 28)), (4, 481, 641, (2, 34, 46)), (1, 30, 90, (1, 12, 40))]:
        masks = torch.from_numpy(rng.random((n, 3, h, w)) > 0.995)
        masks[:, 2] = False
        assert torch.equal(region_token_masks(masks, grid), reference_region_masks(masks, grid)), (n, h, w)


def test_grid_mismatch_is_reported():
    with pytest.raises(RegionError, match="3 frame pairs do not match the video grid's t = 2"):
        region_token_masks(np.ones((5, 1, 8, 8), bool), (2, 4, 4))
    with pytest.raises(RegionError, match=r"masks must be \[frames, objects, H, W\]"):
        region_token_masks(np.ones((5, 8, 8), bool), (3, 4, 4))


def test_region_cells_are_object_major():
    tokens = torch.zeros(3, 2, 1, 1, dtype=torch.bool)
    tokens[2, 0] = tokens[0, 0] = tokens[1, 1] = True
    assert region_cells(tokens) == [(0, 0), (0, 2), (1, 1)]


def test_frame_pair_slices():
    assert frame_pair_token_slices((3, 4, 6)) == [slice(0, 6), slice(6, 12), slice(12, 18)]


@pytest.mark.parametrize("grid", [(1, 8, 12), (2, 10, 14), (3, 16, 16), (1, 2, 2), (2, 34, 46)])
def test_window_index_matches_qwen2_5_vl(grid):
    from transformers.vision_utils import get_vision_window_index

    expected, _ = get_vision_window_index(torch.tensor([grid]), spatial_merge_size=2, window_size=112,
                                          patch_size=14)
    assert torch.equal(merged_window_index(grid), expected)


def test_pooling_indexes_window_ordered_features_with_the_row_order_mask():
    grid = (1, 8, 12)  # 4 x 6 merged tokens; the first 4 x 4 window holds row-order tokens 0-3, 6-9, ...
    row_features = torch.arange(24, dtype=torch.float32)[:, None]  # feature of row-order token j is j
    window_features = row_features[merged_window_index(grid)]      # what the merger MLP sees
    tokens = torch.zeros(1, 1, 4, 6, dtype=torch.bool)
    tokens[0, 0, 0, 4] = True                                      # row-order token 4
    pooled = pool_region_features(window_features, tokens)
    # Window position 4 holds row-order token 6: the checkpoints pool token 6's feature, not token 4's.
    assert pooled.tolist() == [[6.0]]


def test_pooling_means_per_object_and_pair_in_cell_order():
    grid = (2, 4, 4)  # 2 pairs of 2 x 2 tokens: one window each, so window order == row order here
    features = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 3)
    tokens = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
    tokens[0, 0, 0, :] = True          # object 0, pair 0: tokens 0, 1
    tokens[1, 0, 1, 1] = True          # object 0, pair 1: token 3 -> row 7
    tokens[1, 1, :, 0] = True          # object 1, pair 1: tokens 0, 2 -> rows 4, 6
    assert torch.equal(merged_window_index(grid), torch.arange(8))
    pooled = pool_region_features(features, tokens)
    assert pooled[:, 0].tolist() == [0.5, 7.0, 5.0] and pooled.shape == (3, 3)


def test_pooling_checks_the_feature_count():
    with pytest.raises(RegionError, match=r"does not hold 2 x 4 tokens"):
        pool_region_features(torch.zeros(7, 3), torch.ones(2, 1, 2, 2, dtype=torch.bool))


def test_pooling_nothing_gives_an_empty_feature_matrix():
    assert pool_region_features(torch.zeros(4, 5), torch.zeros(1, 1, 2, 2, dtype=torch.bool)).shape == (0, 5)
