"""Cost of the 3-D step (points, centroid, boxes of one object on one frame) next to a tracking step.

    python bench/bench_depth3d.py [--model synthetic] [--device cpu] [--repeats 5]
    python bench/bench_depth3d.py --smoke        # seconds: does it run (numbers meaningless)

For each size (640x480 and 1280x720) a synthetic RGB-D frame is segmented by a click with the
pipeline, then, on the next frame, one tracking step of that object (SAM 2 memory) and the
3-D step of the tracked mask (registered depth with noise and holes; the node's
``objects3d.locate``) are timed, median of ``--repeats``. Printed: both times and the ratio
3-D / tracking, from one run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.objects3d import DepthSettings, locate
from unipixel_ros.pipeline import build_pipeline
from unipixel_ros.prompts import PointPrompt
from unipixel_ros.ros.synthetic_camera import pinhole_k
from unipixel_ros.synthetic.scenes import SyntheticStream, depth_image


def median_seconds(job, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        job()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synthetic")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes and counts")
    args = parser.parse_args()
    sizes = [(160, 120)] if args.smoke else [(640, 480), (1280, 720)]
    repeats = 1 if args.smoke else args.repeats
    pipeline = build_pipeline(args.model, device=args.device, log=lambda *_: None)
    settings = DepthSettings()
    print(f"model {args.model} on {args.device}; median of {repeats}")
    print(f"{'size':>10} {'points':>7} {'track [ms]':>11} {'3-D [ms]':>9}  ratio")
    for width, height in sizes:
        stream = SyntheticStream(seed=3, width=width, height=height, num_objects=2)
        first, second = stream.frame(0), stream.frame(1)
        k = np.array(pinhole_k(width, height, 60.0)).reshape(3, 3)
        cx, cy = first.centers[-1]
        obj = pipeline.segment_prompt([first.image], [0], PointPrompt(object_index=0, frame_index=0,
                                                                      x=float(cx), y=float(cy)))
        bank = ObjectMemoryBank(4, 8)
        object_id = bank.add(obj.label, [(0, obj.masks[0], float(obj.scores[0]))])
        bank.attach_tracking(object_id, obj.tracking)
        stamp = iter(range(1, 10_000))
        tracked = pipeline.track(bank, second.image, next(stamp))      # warm-up, and the mask to locate
        mask = tracked[object_id].mask if tracked[object_id].mask.any() else second.masks[-1]
        depth = depth_image(second, noise_m=0.005, hole_fraction=0.02, seed=1)
        track_s = median_seconds(lambda: pipeline.track(bank, second.image, next(stamp)), repeats)
        located = locate(mask, depth, k, settings)
        d3_s = median_seconds(lambda: locate(mask, depth, k, settings), max(repeats, 20))
        print(f"{width:>5}x{height:<4} {located.point_count:>7} {track_s * 1e3:>11.1f} {d3_s * 1e3:>9.2f}  "
              f"3-D / track = {d3_s / track_s:.4f}")


if __name__ == "__main__":
    main()
