"""Per-stage latency of pipeline queries, and second-query / first-query on the same frames.

    python bench/bench_pipeline.py [--model tiny|PATH|HF_ID] [--device cpu] [--frames 8]
    python bench/bench_pipeline.py --smoke      # seconds: does it run (numbers meaningless)

The second query on the same window reuses the cached SAM 2 frame features, so its
"segment" stages shrink; the ratio is printed from the two runs of one process.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unipixel_ros.pipeline import build_pipeline
from unipixel_ros.prompts import PointPrompt
from unipixel_ros.synthetic import SyntheticStream

SMOKE = dict(model="tiny", frames=2, width=64, height=48)


def timed_query(pipeline, frames, stamps, text, prompts=()) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    result = pipeline.query(frames, stamps, text, prompts)
    return time.perf_counter() - start, result.timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(args.threads)

    pipeline = build_pipeline(args.model, device=args.device, dtype=args.dtype, max_new_tokens=16, log=print)
    stream = SyntheticStream(seed=0, width=args.width, height=args.height)
    frames = [stream.frame(i).image for i in range(args.frames)]
    stamps = [i * 100_000_000 for i in range(args.frames)]
    click = [PointPrompt(object_index=0, frame_index=args.frames - 1, x=args.width / 2, y=args.height / 2)]

    print(f"model={args.model} device={args.device} frames={args.frames} size={args.width}x{args.height}")
    for name, text, prompts in (("text", "Please segment the red circle.", ()),
                                ("point", "What colour is [0]?", click)):
        first, first_stages = timed_query(pipeline, frames, stamps, text, prompts)
        second, second_stages = timed_query(pipeline, frames, stamps, text, prompts)
        stages = ", ".join(f"{k}={v * 1000:.0f}ms" for k, v in first_stages.items())
        print(f"{name:6s} first {first * 1000:7.0f} ms ({stages})")
        stages = ", ".join(f"{k}={v * 1000:.0f}ms" for k, v in second_stages.items())
        print(f"{name:6s} second {second * 1000:6.0f} ms ({stages})")
        print(f"{name:6s} second/first = {second / first:.3f}")


if __name__ == "__main__":
    main()
