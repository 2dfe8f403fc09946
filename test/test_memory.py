"""Object memory bank bounds and ids, and the exact memory prefix text."""
import numpy as np
import pytest
import torch

from unipixel_ros.memory import (MemoryBankError, MemoryCell, MemoryFullError, ObjectMemoryBank, format_memory_prefix,
                                 memory_cells, memory_prefix, memory_question)
from unipixel_ros.prompts import MEM_TOKEN
from unipixel_ros.regions import pool_region_features, region_cells, region_token_masks
from unipixel_ros.sampling import plan_frames

torch.set_num_threads(1)


def blob(shape=(5, 7), at=(1, 2)):
    m = np.zeros(shape, bool)
    m[at] = True
    return m


def test_ids_increase_and_are_never_reused():
    bank = ObjectMemoryBank()
    assert [bank.add("cup"), bank.add("mug"), bank.add("bowl")] == [1, 2, 3]
    bank.remove(2)
    assert bank.add("plate") == 4
    bank.reset()
    assert len(bank) == 0
    assert bank.add("fork") == 5
    assert bank.ids() == [5]


def test_tracking_state_lives_and_dies_with_its_object():
    bank = ObjectMemoryBank()
    oid = bank.add("cup")
    assert bank.tracking(oid) is None
    state = object()
    bank.attach_tracking(oid, state)
    assert bank.tracking(oid) is state
    bank.remove(oid)
    with pytest.raises(ValueError, match=f"no object with id {oid}"):
        bank.tracking(oid)


def test_get_returns_label_and_frames_in_insertion_order():
    bank = ObjectMemoryBank()
    oid = bank.add("cup", [(200, blob(at=(0, 0)), 0.9), (100, blob(at=(4, 6)), 0.5)])
    record = bank.get(oid)
    assert (record.object_id, record.label) == (oid, "cup")
    assert record.stamps == (200, 100) and record.scores == (0.9, 0.5)
    assert record.latest_stamp == 100
    assert record.mask_at(100)[4, 6] and not record.mask_at(100)[0, 0]
    with pytest.raises(MemoryBankError, match=f"object {oid} has no mask for stamp 300"):
        record.mask_at(300)


def test_full_bank_refuses_new_objects_until_one_is_removed():
    bank = ObjectMemoryBank(max_objects=2)
    bank.add("a")
    b = bank.add("b")
    with pytest.raises(MemoryFullError, match=r"memory bank is full \(2 objects\); remove objects or reset"):
        bank.add("c")
    assert issubclass(MemoryFullError, MemoryBankError) and issubclass(MemoryBankError, ValueError)
    bank.remove(b)
    assert bank.add("c") == 3


def test_oldest_frames_are_evicted_and_replacing_a_stamp_keeps_its_place():
    bank = ObjectMemoryBank(max_frames_per_object=3)
    oid = bank.add("cup")
    for stamp in (10, 20, 30, 40):
        bank.add_frame(oid, stamp, blob(), score=stamp / 100)
    assert bank.get(oid).stamps == (20, 30, 40)
    bank.add_frame(oid, 30, blob(at=(3, 3)), score=0.99)
    record = bank.get(oid)
    assert record.stamps == (20, 30, 40) and record.scores == (0.2, 0.99, 0.4)
    assert record.mask_at(30)[3, 3]


def test_records_are_snapshots_and_masks_are_copied_read_only():
    bank = ObjectMemoryBank()
    mask = blob()
    oid = bank.add("cup", [(1, mask, 1.0)])
    mask[:] = False
    stored = bank.get(oid).mask_at(1)
    assert stored[1, 2]
    with pytest.raises(ValueError):
        stored[0, 0] = True
    before = list(bank)
    bank.add_frame(oid, 2, blob(), 1.0)
    bank.add("mug")
    assert [r.stamps for r in before] == [(1,)]
    assert [r.object_id for r in bank] == [1, 2]
    assert oid in bank and 7 not in bank


def test_unknown_ids_and_bad_frames_name_the_problem():
    bank = ObjectMemoryBank()
    with pytest.raises(MemoryBankError, match="no object with id 5 in the memory bank"):
        bank.get(5)
    with pytest.raises(MemoryBankError, match="no object with id 5"):
        bank.remove(5)
    oid = bank.add("cup", [(1, blob(), 1.0)])
    with pytest.raises(MemoryBankError, match="frame stamp must be a non-negative int of nanoseconds"):
        bank.add_frame(oid, 1.5, blob())
    with pytest.raises(MemoryBankError, match="frame stamp must be a non-negative int"):
        bank.add_frame(oid, -1, blob())
    with pytest.raises(MemoryBankError, match=r"mask must be H x W, got shape \(2, 5, 7\)"):
        bank.add_frame(oid, 2, np.zeros((2, 5, 7), bool))
    with pytest.raises(MemoryBankError, match=r"mask shape \(6, 7\) differs from the object's \(5, 7\)"):
        bank.add_frame(oid, 2, np.zeros((6, 7), bool))
    with pytest.raises(MemoryBankError, match="bank limits must be >= 1"):
        ObjectMemoryBank(max_objects=0)


def two_objects_three_pairs() -> np.ndarray:
    masks = np.zeros((6, 2, 33, 47), bool)  # N = 6 sampled frames, 3 pairs, odd size
    masks[0, 0, 3:9, 4:12] = True           # object 0: frame 1 (pair 0)
    masks[5, 0, 20:30, 40:46] = True        # object 0: frame 6 (pair 2)
    masks[2, 1, 10, 10] = True              # object 1: frames 3 and 4 (pair 1)
    masks[3, 1, 11:13, 11:13] = True
    masks[4, 1, 0, 46] = True               # object 1: frame 5 (pair 2)
    return masks


def test_memory_prefix_for_two_objects_and_three_frame_pairs():
    assert memory_prefix([0, 1], two_objects_three_pairs()) == (
        "Here is a video with 6 frames denoted as <1> to <6>. The highlighted regions are as follows:\n"
        "[0]: <1>-<2> <|mem|> <5>-<6> <|mem|>\n"
        "[1]: <3>-<4> <|mem|> <5>-<6> <|mem|>\n")


def test_memory_cells_carry_the_text_object_indices_in_feature_order():
    assert memory_cells([4, 2], two_objects_three_pairs()) == [
        MemoryCell(4, 0), MemoryCell(4, 2), MemoryCell(2, 1), MemoryCell(2, 2)]
    assert memory_prefix([4, 2], two_objects_three_pairs()).endswith(
        "\n[4]: <1>-<2> <|mem|> <5>-<6> <|mem|>\n[2]: <3>-<4> <|mem|> <5>-<6> <|mem|>\n")


def test_odd_frame_count_names_the_last_pair_past_the_end():
    masks = np.zeros((5, 1, 9, 11), bool)
    masks[4, 0, 2, 2] = True
    assert memory_prefix([0], masks) == (
        "Here is a video with 5 frames denoted as <1> to <5>. The highlighted regions are as follows:\n"
        "[0]: <5>-<6> <|mem|>\n")


def test_single_image_prefix_has_no_frame_tags():
    assert memory_prefix([0, 1], np.ones((1, 2, 9, 11), bool)) == (
        "Here is an image with the following highlighted regions:\n[0]: <|mem|>\n[1]: <|mem|>\n")


def test_object_lost_on_every_frame_is_highlighted_everywhere():
    masks = np.zeros((4, 2, 9, 11), bool)
    masks[0, 0, 1, 1] = True
    assert memory_prefix([0, 1], masks).endswith("[0]: <1>-<2> <|mem|>\n[1]: <1>-<2> <|mem|> <3>-<4> <|mem|>\n")


def test_memory_question_is_prefix_then_question():
    masks = np.ones((2, 1, 4, 4), bool)
    assert memory_question("What is [0]?", [0], masks) == memory_prefix([0], masks) + "What is [0]?"


def test_mem_token_count_equals_pooled_features_on_random_masks():
    rng = np.random.default_rng(3)
    for n, h, w in [(5, 37, 53), (7, 48, 30), (1, 29, 31), (16, 20, 24)]:
        masks = rng.random((n, 3, h, w)) > 0.999
        plan = plan_frames(n, h, w)
        tokens = region_token_masks(masks, plan.grid_thw)
        cells = memory_cells([0, 1, 2], masks)
        features = pool_region_features(torch.randn(plan.num_video_tokens, 4), tokens)
        assert memory_prefix([0, 1, 2], masks).count(MEM_TOKEN) == len(cells) == features.shape[0]
        assert [(c.object_index, c.frame_pair) for c in cells] == region_cells(tokens)


def test_prefix_inputs_are_checked():
    with pytest.raises(MemoryBankError, match=r"object indices must be distinct, got \[0, 0\]"):
        memory_cells([0, 0], np.ones((2, 2, 3, 3), bool))
    with pytest.raises(MemoryBankError, match="1 object indices for masks of 2 objects"):
        memory_cells([0], np.ones((2, 2, 3, 3), bool))
    with pytest.raises(MemoryBankError, match="need at least one frame"):
        format_memory_prefix(0, [])
