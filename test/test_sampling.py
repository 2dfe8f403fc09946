"""Frame sampling and resize rules for the language model, with exact expected values."""
import numpy as np
import pytest
import torch

from unipixel_ros.sampling import (BASE_MAX_PIXELS, MIN_PIXELS, SamplingError, max_pixels_for, padded_frame_count,
                                   plan_frames, resize_for_llm, sample_frame_indices, select_frames, smart_resize,
                                   uniform_frame_indices)

torch.set_num_threads(1)


def test_uniform_sample_of_20_frames():
    # i * 19 / 15 for i < 16, rounded.
    assert uniform_frame_indices(20, 16) == [0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]


@pytest.mark.parametrize("n, k, expected", [
    (6, 3, [0, 2, 5]),   # 2.5 -> 2 (half to even)
    (4, 3, [0, 2, 3]),   # 1.5 -> 2
    (8, 3, [0, 4, 7]),   # 3.5 -> 4
    (5, 16, [0, 1, 2, 3, 4]),
    (1, 16, [0]),
])
def test_uniform_sample_rounds_half_to_even_and_keeps_short_windows(n, k, expected):
    assert uniform_frame_indices(n, k) == expected


def test_uniform_sample_equals_the_arange_formula_of_the_checkpoints_loader():
    for n in range(17, 200):
        for k in range(2, 17):
            reference = np.arange(0, n, (n - 1) / (k - 1))[:k].round().astype(int).tolist()
            assert uniform_frame_indices(n, k) == reference, (n, k)


def test_uniform_sample_needs_two_frames_at_least():
    with pytest.raises(SamplingError, match="max_frames must be at least 2"):
        uniform_frame_indices(10, 1)
    with pytest.raises(SamplingError, match="at least one frame"):
        uniform_frame_indices(0)


def test_kept_frame_replaces_nearest_sample_earlier_on_tie():
    # uniform(20, 16) has 1 and 3 around 2 (tie -> 1 replaced); 6 and 8 around 7 (tie -> 6 replaced).
    assert sample_frame_indices(20, 16, keep=[2]) == [0, 2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]
    assert sample_frame_indices(20, 16, keep=[7]) == [0, 1, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]
    assert sample_frame_indices(20, 16, keep=[5]) == uniform_frame_indices(20, 16)


def test_two_kept_frames_never_displace_each_other():
    # uniform(40, 4) = [0, 13, 26, 39]: 12 takes 13's place, 14 then takes 26's (0 is farther).
    assert sample_frame_indices(40, 4, keep=[14, 12]) == [0, 12, 14, 39]


def test_keep_errors_name_the_problem():
    with pytest.raises(SamplingError, match="frame 20 to keep is outside the window of 20 frames"):
        sample_frame_indices(20, 16, keep=[20])
    with pytest.raises(SamplingError, match="cannot keep 3 prompted frames in a sample of 2"):
        sample_frame_indices(20, 2, keep=[3, 5, 7])


@pytest.mark.parametrize("n, expected", [(1, 2), (2, 2), (3, 4), (15, 16), (16, 16)])
def test_padded_frame_count(n, expected):
    assert padded_frame_count(n) == expected


@pytest.mark.parametrize("n, factor", [(16, 1), (10, 1), (8, 2), (5, 3), (3, 5), (1, 16)])
def test_max_pixels_uses_integer_frame_factor(n, factor):
    assert max_pixels_for(n) == 256 * 28 * 28 * factor


def test_max_pixels_rejects_more_frames_than_allowed():
    with pytest.raises(SamplingError, match=r"sampled frame count 17 is not in \[1, 16\]"):
        max_pixels_for(17)


def test_smart_resize_exact_sizes():
    assert smart_resize(480, 640, MIN_PIXELS, max_pixels_for(16)) == (364, 504)   # scaled down, floored
    assert smart_resize(480, 640, MIN_PIXELS, max_pixels_for(1)) == (476, 644)    # rounded only
    assert smart_resize(481, 641, MIN_PIXELS, max_pixels_for(5)) == (476, 644)
    assert smart_resize(9, 21, MIN_PIXELS, BASE_MAX_PIXELS) == (224, 504)          # scaled up, ceiled
    assert smart_resize(70, 98, 1, 10 ** 9) == (56, 112)                            # 2.5 -> 2, 3.5 -> 4


def test_smart_resize_agrees_with_transformers_in_range():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    for h, w in [(480, 640), (481, 641), (720, 1280), (37, 53), (1080, 1920), (300, 200)]:
        for n in (1, 3, 5, 16):
            assert smart_resize(h, w, MIN_PIXELS, max_pixels_for(n)) == hf_smart_resize(
                h, w, 28, MIN_PIXELS, max_pixels_for(n)), (h, w, n)


def test_smart_resize_rejects_extreme_aspect_ratio():
    with pytest.raises(SamplingError, match="aspect ratio of 201x1 exceeds 200"):
        smart_resize(1, 201)


def test_plan_for_a_single_image_is_a_two_frame_video():
    plan = plan_frames(1, 480, 640)
    assert plan.indices == (0,) and plan.padded_indices == (0, 0)
    assert (plan.height, plan.width) == (476, 644)
    assert plan.grid_thw == (1, 34, 46)
    assert (plan.num_sampled, plan.num_padded, plan.num_video_tokens) == (1, 2, 17 * 23)


def test_plan_for_odd_frame_count_and_odd_size():
    plan = plan_frames(5, 481, 641)
    assert plan.indices == (0, 1, 2, 3, 4) and plan.padded_indices == (0, 1, 2, 3, 4, 4)
    assert plan.grid_thw == (3, 34, 46)


def test_plan_for_a_long_window_samples_16_frames():
    plan = plan_frames(40, 480, 640, keep=[2])  # uniform: 0, 3, 5, ... (i * 2.6 rounded)
    assert plan.indices == (0, 2, 5, 8, 10, 13, 16, 18, 21, 23, 26, 29, 31, 34, 36, 39)
    assert plan.padded_indices == plan.indices
    assert plan.grid_thw == (8, 26, 36)
    assert plan.position_of(2) == 1
    with pytest.raises(SamplingError, match="window frame 3 is not among the sampled frames"):
        plan.position_of(3)


def test_processor_produces_the_planned_grid():
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    plan = plan_frames(5, 37, 53)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(5)]
    video = np.stack(select_frames(frames, plan))
    out = Qwen2VLVideoProcessor()(videos=[video], return_tensors="pt", do_sample_frames=False)
    assert tuple(out["video_grid_thw"][0].tolist()) == plan.grid_thw


def test_select_frames_resizes_and_repeats_the_last_frame():
    plan = plan_frames(3, 37, 53)
    frames = [np.full((37, 53, 3), v, np.uint8) for v in (10, 20, 30)]
    selected = select_frames(frames, plan)
    assert len(selected) == 4
    assert all(f.shape == (plan.height, plan.width, 3) and f.dtype == np.uint8 for f in selected)
    assert [int(f[0, 0, 0]) for f in selected] == [10, 20, 30, 30]


def test_resize_for_llm_keeps_a_frame_already_at_size():
    frame = np.zeros((56, 84, 3), np.uint8)
    assert resize_for_llm(frame, 56, 84) is frame
    with pytest.raises(SamplingError, match="expected an RGB uint8 HxWx3 frame"):
        resize_for_llm(np.zeros((56, 84), np.uint8), 28, 28)
