"""ObjectStore: node-wide ids over per-camera memory banks, lost / seen bookkeeping (ROS-free)."""
from __future__ import annotations

import numpy as np
import pytest

from unipixel_ros.memory import MemoryFullError
from unipixel_ros.object_store import ObjectStore, UnknownCameraError, UnknownObjectError
from unipixel_ros.results import TrackedMask


def mask(on: bool) -> np.ndarray:
    m = np.zeros((4, 5), bool)
    m[1, 2] = on
    return m


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore(["a", "b"], max_objects=2, max_frames_per_object=3)


def test_ids_are_unique_across_cameras_and_map_to_each_banks_own_ids(store: ObjectStore) -> None:
    first = store.add("a", "cup", [(10, mask(True), 0.9)])
    second = store.add("b", "mug", [(10, mask(True), 0.8)])
    third = store.add("a", "pen", [(11, mask(True), 0.7)])
    assert (first, second, third) == (1, 2, 3)
    assert store.bank_id("a", first) == 1 and store.bank_id("b", second) == 1 and store.bank_id("a", third) == 2
    assert [o.object_id for o in store.objects("a")] == [1, 3]
    with pytest.raises(UnknownObjectError, match="object 2 belongs to camera 'b', not 'a'"):
        store.bank_id("a", second)


def test_objects_the_pipeline_stored_are_adopted_once(store: ObjectStore) -> None:
    bank_id = store.bank("a").add("from a query", [(5, mask(False), 0.1), (6, mask(True), 0.9)])
    object_id = store.adopt("a", bank_id)
    assert store.adopt("a", bank_id) == object_id
    obj = store.get(object_id)
    assert (obj.label, obj.lost, obj.first_seen_ns, obj.last_seen_ns) == ("from a query", False, 6, 6)


def test_tracking_steps_update_lost_and_last_seen(store: ObjectStore) -> None:
    object_id = store.add("a", "cup", [(10, mask(True), 0.9)])
    bank_id = store.bank_id("a", object_id)
    store.record_tracking("a", 20, {bank_id: TrackedMask(mask(True), 0.9, True)})
    assert (store.get(object_id).lost, store.get(object_id).last_seen_ns) == (False, 20)
    store.record_tracking("a", 30, {bank_id: TrackedMask(mask(False), 0.1, False)})
    assert (store.get(object_id).lost, store.get(object_id).last_seen_ns) == (True, 20)
    store.record_tracking("a", 40, {})                         # not stepped at all: lost too
    assert store.get(object_id).lost
    store.record_tracking("a", 50, {bank_id: TrackedMask(mask(True), 0.9, True)})
    assert (store.get(object_id).lost, store.get(object_id).first_seen_ns) == (False, 10)


def test_a_click_keeps_the_tracker_state_with_the_object(store: ObjectStore) -> None:
    state = object()
    object_id = store.add("b", "click", [(7, mask(True), 1.0)], tracking=state)
    assert store.bank("b").tracking(store.bank_id("b", object_id)) is state


def test_remove_reports_unknown_ids_and_reset_counts(store: ObjectStore) -> None:
    ids = [store.add("a", "x", [(1, mask(True), 1.0)]), store.add("b", "y", [(1, mask(True), 1.0)]),
           store.add("b", "z", [(1, mask(True), 1.0)])]
    assert store.remove([ids[0], 99]) == ([ids[0]], [99])
    assert len(store.bank("a")) == 0
    assert store.reset("b") == 2 and len(store) == 0
    assert store.add("a", "new", [(2, mask(True), 1.0)]) == 4      # ids are never reused
    with pytest.raises(UnknownCameraError, match=r"unknown camera 'c' \(configured: a, b\)"):
        store.reset("c")


def test_a_full_camera_bank_refuses_more(store: ObjectStore) -> None:
    store.add("a", "1", [(1, mask(True), 1.0)])
    store.add("a", "2", [(1, mask(True), 1.0)])
    with pytest.raises(MemoryFullError):
        store.add("a", "3", [(1, mask(True), 1.0)])
    assert store.add("b", "other camera", [(1, mask(True), 1.0)]) == 3


class Timeline:
    """What the store follows: a camera window's epoch, bumped by hand here."""

    def __init__(self) -> None:
        self.epoch = 0


def test_a_new_timeline_drops_the_old_masks_but_keeps_the_objects_and_their_tracking() -> None:
    timeline, state = Timeline(), object()
    store = ObjectStore(["a", "b"], max_objects=2, max_frames_per_object=3, timelines={"a": timeline})
    object_id = store.add("a", "cup", [(100, mask(True), 0.9), (110, mask(True), 0.8)], tracking=state)
    other = store.add("b", "mug", [(100, mask(True), 0.9)])
    bank_id = store.bank_id("a", object_id)
    store.record_tracking("a", 120, {bank_id: TrackedMask(mask(True), 0.9, True)})
    assert store.get(object_id).last_seen_ns == 120

    timeline.epoch = 1                                  # camera a's stamps went back (a looped bag)
    obj = store.get(object_id)
    assert (obj.label, obj.lost, obj.record.stamps, obj.mask_at(110)) == ("cup", False, (), None)
    assert (obj.first_seen_ns, obj.last_seen_ns) == (None, None)
    assert store.bank("a").tracking(bank_id) is state   # it goes on from the tracker's own memory
    assert store.get(other).record.stamps == (100,)      # other cameras keep theirs

    store.bank("a").add_frame(bank_id, 5, mask(True), 0.9)     # the pipeline's step on the new timeline
    store.record_tracking("a", 5, {bank_id: TrackedMask(mask(True), 0.9, True)}, epoch=1)
    obj = store.get(object_id)
    assert (obj.record.stamps, obj.first_seen_ns, obj.last_seen_ns) == ((5,), 5, 5)


def test_a_step_on_a_frame_of_the_old_timeline_is_not_recorded() -> None:
    timeline = Timeline()
    store = ObjectStore(["a"], max_objects=2, max_frames_per_object=3, timelines={"a": timeline})
    object_id = store.add("a", "cup", [(100, mask(True), 0.9)])
    bank_id = store.bank_id("a", object_id)
    bank = store.bank("a")
    timeline.epoch = 1                                   # the window restarted during the step,
    assert store.get(object_id).record.stamps == ()      # and the store followed it at once;
    bank.add_frame(bank_id, 110, mask(True), 0.9)       # then the pipeline stored the old frame's mask
    store.record_tracking("a", 110, {bank_id: TrackedMask(mask(True), 0.9, True)}, epoch=0)
    obj = store.get(object_id)
    assert (obj.record.stamps, obj.last_seen_ns) == ((), None)


def test_an_object_segmented_on_an_ended_timeline_is_kept_without_its_old_masks() -> None:
    timeline, state = Timeline(), object()
    store = ObjectStore(["a"], max_objects=4, max_frames_per_object=3, timelines={"a": timeline})
    timeline.epoch = 1                       # the stamps jumped back while a click's model call ran
    clicked = store.add("a", "cup", [(100, mask(True), 0.9)], state, epoch=0)
    stored = store.bank("a").add("box", [(100, mask(True), 0.8)])   # a query's remember, same timing
    queried = store.adopt("a", stored, epoch=0)
    fresh = store.add("a", "mug", [(7, mask(True), 0.7)], epoch=1)
    by_id = {o.object_id: o for o in store.objects("a")}
    assert by_id[clicked].record.stamps == () and by_id[queried].record.stamps == ()
    assert by_id[clicked].mask_at(100) is None and by_id[clicked].first_seen_ns is None
    assert store.bank("a").tracking(store.bank_id("a", clicked)) is state   # tracking goes on from it
    assert by_id[fresh].record.stamps == (7,)
