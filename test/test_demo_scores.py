"""The demo's self-scoring: true masks found by the frames' pixels, IoU per tracked object."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from unipixel_ros.demo import FOLLOW_UP, GroundTruth, Recorder, best_match, score_follow_up, score_track
from unipixel_ros.synthetic.scenes import SyntheticStream


def _image_msg(image: np.ndarray) -> SimpleNamespace:
    height, width = image.shape[:2]
    return SimpleNamespace(encoding="rgb8", height=height, width=width, step=width * 3, data=image.tobytes())


def _received(stream: SyntheticStream, indices: range) -> tuple[Recorder, dict[int, int]]:
    rec = Recorder()
    stamps = {}
    for i in indices:
        stamp = 1_000_000_000 + i * 200_000_000
        rec.images[stamp] = _image_msg(stream.frame(i).image)
        stamps[stamp] = i
    return rec, stamps


def test_true_masks_score_one_and_another_shapes_masks_score_zero() -> None:
    stream = SyntheticStream(3, 160, 120, 3)
    rec, stamps = _received(stream, range(40, 52))      # the demo starts receiving mid-stream
    truth = GroundTruth(stream, rec)
    names = [o.name for o in stream.scene_at(0)[0].objects]
    own = [(s, stream.frame(i).masks[0]) for s, i in stamps.items()]
    other = [(s, stream.frame(i).masks[1] & ~stream.frame(i).masks[0]) for s, i in stamps.items()]
    assert score_track(truth, names[0], own) == {"object": names[0], "frames": 12, "mean_iou": 1.0, "min_iou": 1.0,
                                                 "frames_iou_at_least_0.5": 12}
    assert score_track(truth, names[0], other)["mean_iou"] == 0.0
    stamp, mask = own[-1]
    assert best_match(truth, names, stamp, mask) == names[0]
    assert best_match(truth, names, stamp, np.zeros_like(mask)) is None


def test_a_mask_one_frame_late_scores_below_the_same_mask_on_its_own_frame() -> None:
    stream = SyntheticStream(3, 160, 120, 3)
    rec, stamps = _received(stream, range(0, 30))
    truth = GroundTruth(stream, rec)
    name = stream.scene_at(0)[0].objects[0].name
    ordered = sorted(stamps)
    late = [(s, stream.frame(stamps[s] - 5).masks[0]) for s in ordered[5:]]
    assert score_track(truth, name, late)["mean_iou"] < 0.9
    assert score_track(truth, name, [(1, stream.frame(0).masks[0])]) == {"object": name, "frames": 0}


def _object3d(stamp: int, centroid: np.ndarray, points: int = 100) -> SimpleNamespace:
    x, y, z = (float(c) for c in centroid)
    sec, nanosec = divmod(stamp, 1_000_000_000)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id="cam"),
                           point_count=points, status="", centroid=SimpleNamespace(x=x, y=y, z=z))


def test_3d_of_a_true_mask_over_the_synthetic_depth_scores_zero_error_and_an_offset_scores_the_offset() -> None:
    from unipixel_ros.demo import score_3d, true_centroid
    from unipixel_ros.objects3d import DepthSettings, encode_depth_mm, locate
    from unipixel_ros.ros.synthetic_camera import pinhole_k
    from unipixel_ros.synthetic.scenes import depth_image, object_depth_m

    stream = SyntheticStream(3, 160, 120, 3)
    rec, stamps = _received(stream, range(10, 14))
    truth = GroundTruth(stream, rec)
    names = [o.name for o in stream.scene_at(0)[0].objects]
    k = pinhole_k(160, 120, 60.0)
    exact, shifted = [], []
    for stamp, i in stamps.items():
        frame = stream.frame(i)
        depth_mm = encode_depth_mm(depth_image(frame)) / 1000.0        # as the demo camera sends it (16UC1)
        obj = locate(frame.masks[1], depth_mm, np.array(k).reshape(3, 3), DepthSettings())
        assert truth.depth(stamp, names[1]) == object_depth_m(1, 3)
        np.testing.assert_allclose(obj.centroid, true_centroid(frame.masks[1], object_depth_m(1, 3), k), atol=1e-3)
        exact.append(_object3d(stamp, obj.centroid))
        shifted.append(_object3d(stamp, obj.centroid + [0.0, 0.0, 0.1]))
    good = score_3d(truth, names[1], exact + [_object3d(min(stamps), np.zeros(3), points=0)], k)
    assert good["frames"] == 4 and good["without_3d"] == 1 and good["true_depth_m"] == object_depth_m(1, 3)
    assert abs(good["mean_z_error_m"]) < 1e-3 and good["mean_centroid_error_m"] < 1e-3
    off = score_3d(truth, names[1], shifted, k)
    assert off["mean_z_error_m"] == pytest.approx(0.1, abs=1e-3) and off["max_abs_z_error_m"] == pytest.approx(0.1, abs=1e-3)
    wrong_shape = score_3d(truth, names[0], exact, k)             # the 3-D of another shape than asked for
    assert abs(wrong_shape["mean_z_error_m"]) >= 0.25 - 1e-3
    assert score_3d(truth, names[1], [_object3d(1, np.ones(3))], k) == {"object": names[1], "frames": 0,
                                                                        "without_3d": 1}


def test_click_targets_stay_inside_their_shape_while_the_click_travels() -> None:
    # The node segments its newest frame, a frame or more after the one the demo aimed at;
    # the point must still be on the same shape there. The old choice (the deepest pixel of
    # the aimed-at frame alone) landed off the shape, or on another, within the lead on
    # these frames of the demo's default stream.
    from unipixel_ros.demo import CLICK_LEAD_FRAMES, HEIGHT, NUM_OBJECTS, WIDTH, click_targets

    stream = SyntheticStream(3, WIDTH, HEIGHT, NUM_OBJECTS)      # the demo's default seed
    names = [o.name for o in stream.scene_at(0)[0].objects]
    checked = 0
    for index in range(20, 80, 3):
        for aimed, name, x, y in click_targets(stream, stream.frame(index).image, index, first=names[0]):
            assert aimed == index
            k = names.index(name)
            for lead in range(CLICK_LEAD_FRAMES + 1):
                frame = stream.frame(index + lead)
                assert frame.masks[k][int(y), int(x)], (index, name, lead)
                assert not any(frame.masks[j][int(y), int(x)] for j in range(len(names)) if j != k), (index, name, lead)
            checked += 1
    assert checked >= 40


def test_the_follow_up_answer_is_scored_against_the_clicked_shapes_colour() -> None:
    right = score_follow_up("Blue.", "blue triangle", "blue", 2, "blue triangle")
    wrong = score_follow_up("orange", "blue triangle", "blue", 2, "orange circle")
    assert right["correct"] and not wrong["correct"]
    assert (right["question"], right["memory_id"], wrong["mask_is_on"]) == (FOLLOW_UP, 2, "orange circle")


def test_the_query_overlay_draws_each_objects_whole_label(tmp_path) -> None:
    """The renderer shortens a label to fit the frame (with an ellipsis); the demo hands it the whole
    label, as it does for tracked frames. Cutting it first left "Please segment the red t" on the
    query's overlay."""
    from unipixel_ros.demo import write_query_outputs

    image = np.zeros((24, 32, 3), np.uint8)
    mask = SimpleNamespace(encoding="mono8", height=24, width=32, step=32, data=np.ones((24, 32), np.uint8).tobytes())
    label = "Please segment the red triangle."
    result = SimpleNamespace(frame_stamps=[SimpleNamespace(sec=1, nanosec=0)],
                             objects=[SimpleNamespace(id=1, label=label, masks=[mask])])
    rec = Recorder()
    rec.images[1_000_000_000] = _image_msg(image)
    drawn = []

    def draw(frame, objects):
        drawn.extend(objects)
        return frame

    write_query_outputs(tmp_path, result, rec, draw, lambda ident, text, where: SimpleNamespace(label=text))
    assert [o.label for o in drawn] == [label]
    assert (tmp_path / "query_overlay.png").is_file() and (tmp_path / "query_obj1_frame00.png").is_file()
