"""The demo's self-scoring: true masks found by the frames' pixels, IoU per tracked object."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from unipixel_ros.demo import GroundTruth, Recorder, best_match, score_track
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
