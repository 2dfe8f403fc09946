"""M-RoPE position ids as the published UniPixel weights were trained with (transformers 4.53 rules)."""
import pytest
import torch
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from unipixel_ros.model.rope import mrope_position_ids

VS, VIDEO, VE, TEXT = 900, 901, 902, 5
KW = dict(video_token_id=VIDEO, vision_start_token_id=VS, spatial_merge_size=2, tokens_per_second=2)


def sequence(grid_t, grid_h, grid_w, before=2, after=2):
    tokens = grid_t * (grid_h // 2) * (grid_w // 2)
    return torch.tensor([TEXT] * before + [VS] + [VIDEO] * tokens + [VE] + [TEXT] * (after - 1))


def test_text_after_a_video_continues_after_its_largest_temporal_position():
    ids = sequence(3, 4, 6)  # 3 frame pairs of 2 x 3 merged tokens
    positions, offset = mrope_position_ids(ids, torch.tensor([[3, 4, 6]]), [1.0], **KW)
    t = [3 + 2 * k for k in range(3) for _ in range(6)]
    h = [3 + r for _ in range(3) for r in range(2) for _ in range(3)]
    w = [3 + c for _ in range(3) for _ in range(2) for c in range(3)]
    expected = torch.tensor([[0, 1, 2] + t + [8, 9], [0, 1, 2] + h + [8, 9], [0, 1, 2] + w + [8, 9]])
    assert torch.equal(positions, expected)
    assert offset == 10 - len(ids)


def test_seconds_per_grid_step_are_truncated_to_whole_seconds():
    ids = sequence(2, 2, 2)
    half_second, _ = mrope_position_ids(ids, torch.tensor([[2, 2, 2]]), [0.5], **KW)
    assert half_second[0, 3:5].tolist() == [3, 3]
    three_halves, _ = mrope_position_ids(ids, torch.tensor([[2, 2, 2]]), [1.5], **KW)
    assert three_halves[0, 3:5].tolist() == [3, 5]


def test_text_only_positions_are_the_token_indices():
    positions, offset = mrope_position_ids(torch.tensor([TEXT] * 4), None, None, **KW)
    assert torch.equal(positions, torch.arange(4).expand(3, -1)) and offset == 0


class RopeOnly:
    """transformers' position-id code without building a Qwen2.5-VL model around it."""

    get_rope_index = Qwen2_5_VLModel.get_rope_index
    get_vision_position_ids = Qwen2_5_VLModel.get_vision_position_ids

    def __init__(self, config):
        self.config = config


def test_agrees_with_transformers_where_time_does_not_extend_past_space():
    """One frame pair: both rules place the trailing text identically."""
    config = Qwen2_5_VLConfig(vision_start_token_id=VS, video_token_id=VIDEO, image_token_id=903,
                              vision_config={"spatial_merge_size": 2, "tokens_per_second": 2})
    ids = sequence(1, 4, 6)[None]
    types = (ids == VIDEO).int() * 2
    theirs, their_delta = RopeOnly(config).get_rope_index(
        ids, types, video_grid_thw=torch.tensor([[1, 4, 6]]), second_per_grid_ts=torch.tensor([1.0]))
    ours, offset = mrope_position_ids(ids[0], torch.tensor([[1, 4, 6]]), [1.0], **KW)
    assert torch.equal(ours, theirs[:, 0]) and offset == int(their_delta)


def test_grid_and_text_must_agree():
    with pytest.raises(ValueError, match="1 video"):
        mrope_position_ids(sequence(1, 2, 2), None, None, **KW)
    with pytest.raises(ValueError, match="need 19 tokens"):
        mrope_position_ids(sequence(1, 2, 2)[:4], torch.tensor([[4, 4, 4]]), None, **KW)
