"""Second query on the same window vs the first: what the per-frame SAM 2 feature cache saves.

A query with K ``<SEG>`` objects over T frames: the first run encodes the T frames
(cold cache), the second finds them all cached. Printed side by side from one run,
with the image-encoder call counts. Random weights (timing does not depend on them).

    python bench/bench_sam2_cache.py                       # tiny SAM 2.1, CPU
    python bench/bench_sam2_cache.py --model unipixel --device cuda --dtype bfloat16
    python bench/bench_sam2_cache.py --smoke               # seconds: does it run (numbers meaningless)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unipixel_ros.geometry import SAM_IMAGE_SIZE
from unipixel_ros.model.config import PUBLISHED_SAM2_CONFIG, resolve_sam2_config
from unipixel_ros.model.feature_cache import FeatureCache
from unipixel_ros.model.sam2_engine import Sam2Engine
from unipixel_ros.model.sam2_source import build_sam2_model, tiny_sam2

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SMOKE = dict(frames=2, objects=1, height=48, width=64, repeats=1)


def unipixel_sam2() -> torch.nn.Module:
    """A random SAM 2.1 of UniPixel's size: the published checkpoints' config, at their input size."""
    config, overrides = resolve_sam2_config(PUBLISHED_SAM2_CONFIG)
    return build_sam2_model(config, SAM_IMAGE_SIZE, overrides)


def _query(engine: Sam2Engine, frames, keys, tokens) -> float:
    """Seconds for one query: every <SEG> segmented over the whole window."""
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in tokens:
        engine.segment_seg_tokens(frames, keys, t)
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "unipixel"), default="tiny",
                        help="tiny random SAM 2.1, or UniPixel's hiera-b+ at 768 px")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--objects", type=int, default=2, help="<SEG> tokens per query")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    if args.frames < 1 or args.objects < 1 or args.repeats < 1:
        parser.error("--frames, --objects and --repeats must be at least 1")

    torch.set_num_threads(args.threads)
    sam = tiny_sam2(256) if args.model == "tiny" else unipixel_sam2()
    sam = sam.to(args.device)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(args.frames)]
    tokens = torch.randn(args.objects, 2, sam.sam_prompt_embed_dim, generator=torch.Generator().manual_seed(0))

    # Warm-up on other keys (allocator, kernels), then time cold vs warm on fresh engines.
    warm_engine = Sam2Engine(sam, dtype=DTYPES[args.dtype])
    warm = frames[:2]
    _query(warm_engine, warm, [("warmup", i) for i in range(len(warm))], tokens[:1])

    firsts, seconds = [], []
    for r in range(args.repeats):
        engine = Sam2Engine(sam, cache=FeatureCache(max(args.frames, 1)), dtype=DTYPES[args.dtype])
        keys = [("cam", r, i) for i in range(args.frames)]
        firsts.append(_query(engine, frames, keys, tokens))
        encoded_first = engine.encode_count
        seconds.append(_query(engine, frames, keys, tokens))
        encoded_second = engine.encode_count - encoded_first

    first, second = float(np.median(firsts)), float(np.median(seconds))
    print(f"model={args.model} image_size={sam.image_size} device={args.device} dtype={args.dtype} "
          f"frames={args.frames} objects={args.objects} frame={args.height}x{args.width}")
    print(f"first query  (cold cache): {first * 1e3:9.1f} ms  frames encoded: {encoded_first}")
    print(f"second query (same frames): {second * 1e3:8.1f} ms  frames encoded: {encoded_second}")
    print(f"second / first ratio: {second / first:.3f}")


if __name__ == "__main__":
    main()
