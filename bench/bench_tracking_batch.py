"""Tracking cost of many objects: one batched SAM 2 step for all of a camera's objects vs one step each.

    python bench/bench_tracking_batch.py                          # tiny SAM 2.1 and hiera-b+ at 768, CPU
    python bench/bench_tracking_batch.py --models tiny --objects 1,5,10,20
    python bench/bench_tracking_batch.py --device cuda --dtype bfloat16
    python bench/bench_tracking_batch.py --smoke                  # seconds: does it run (numbers meaningless)

For each model and object count N: N objects in the steady memory layout (a prompted
frame, ``num_maskmem - 1`` recent memories, a full pointer window), stepped onto new
camera frames whose image features are already cached (what a tracking step costs on
top of the encoder, which runs once per frame either way). ``batched``:
``Sam2Engine.track_many`` (one step for all N); ``per-object``: ``Sam2Engine.track`` for
each object. The objects are copies of one object segmented over a window (timing does
not depend on the memory's values, and seeding N objects at b+ size on a CPU would take
minutes). Random weights. Printed per model: milliseconds per frame, the cost of N
objects relative to 1 for both ways, and batched / per-object, from one run. Each figure
is the fastest of the timed frames: on a shared CPU the others measure the neighbours too.
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from unipixel_ros.geometry import SAM_IMAGE_SIZE
from unipixel_ros.model.config import PUBLISHED_SAM2_CONFIG, resolve_sam2_config
from unipixel_ros.model.feature_cache import FeatureCache
from unipixel_ros.model.sam2_engine import Sam2Engine, TrackState
from unipixel_ros.model.sam2_source import build_sam2_model, tiny_sam2

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODELS = ("tiny", "unipixel")
SMOKE = dict(models="tiny", objects="1,2", steps=1, warmup=1, height=48, width=64)
DISTINCT_FRAMES = 4     # the seed window cycles through this many images (each encoded once)


def build_model(name: str) -> torch.nn.Module:
    """``tiny``: the tiny random SAM 2.1 at 256 px; ``unipixel``: SAM 2.1 hiera-b+ at 768 px, random."""
    if name == "tiny":
        return tiny_sam2(256)
    config, overrides = resolve_sam2_config(PUBLISHED_SAM2_CONFIG)
    return build_sam2_model(config, SAM_IMAGE_SIZE, overrides)


def steady_window(sam: torch.nn.Module) -> int:
    """Frames after which a tracked object's memory has its steady layout (memories and pointers full)."""
    return max(int(sam.num_maskmem), int(sam.max_obj_ptrs_in_encoder)) + 1


def _sync(engine: Sam2Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def _timed(engine: Sam2Engine, run) -> float:
    _sync(engine)
    start = time.perf_counter()
    run()
    _sync(engine)
    return time.perf_counter() - start


def measure(name: str, args: argparse.Namespace, counts: list[int]) -> tuple[int, dict[int, tuple[float, float]]]:
    """The model's image size, and object count -> (batched, per-object) fastest seconds per frame."""
    sam = build_model(name).to(args.device)
    window = steady_window(sam)
    engine = Sam2Engine(sam, cache=FeatureCache(DISTINCT_FRAMES + args.warmup + args.steps + 1),
                        dtype=DTYPES[args.dtype])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
              for _ in range(DISTINCT_FRAMES + args.warmup + args.steps)]
    seed_frames = [images[i % DISTINCT_FRAMES] for i in range(window)]
    seed_keys = [("seed", i % DISTINCT_FRAMES) for i in range(window)]
    tokens = torch.randn(1, 2, sam.sam_prompt_embed_dim, generator=torch.Generator().manual_seed(0))
    seeded: TrackState = engine.segment_seg_tokens_many(seed_frames, seed_keys, tokens)[0].state
    live = images[DISTINCT_FRAMES:]
    live_keys = [("live", i) for i in range(len(live))]
    engine.features(live, live_keys)            # encoded once: a step reuses the frame's cached features

    results: dict[int, tuple[float, float]] = {}
    for count in counts:
        batched_states = [copy.deepcopy(seeded) for _ in range(count)]
        single_states = [copy.deepcopy(seeded) for _ in range(count)]
        batched, single = [], []
        for step, (frame, key) in enumerate(zip(live, live_keys)):
            # Alternate which way goes first, so neither always finds warm caches.
            runs = [("batched", lambda: engine.track_many(batched_states, frame, key)),
                    ("single", lambda: [engine.track(s, frame, key) for s in single_states])]
            for way, run in (runs if step % 2 == 0 else runs[::-1]):
                seconds = _timed(engine, run)
                if step >= args.warmup:
                    (batched if way == "batched" else single).append(seconds)
        results[count] = (min(batched), min(single))
    return int(sam.image_size), results


def report(name: str, sam_size: int, results: dict[int, tuple[float, float]]) -> None:
    base_batched, base_single = results[min(results)]
    print(f"{name} (image_size {sam_size}): ms per frame; N objects relative to {min(results)}")
    print(f"  {'objects':>7}  {'batched':>9}  {'per-object':>10}  {'batched xN':>10}  {'per-obj xN':>10}  "
          f"batched/per-object")
    for count, (batched, single) in sorted(results.items()):
        print(f"  {count:>7}  {batched * 1e3:9.1f}  {single * 1e3:10.1f}  {batched / base_batched:10.2f}  "
              f"{single / base_single:10.2f}  {batched / single:.3f}")
    for count, (batched, single) in sorted(results.items()):
        if count > 1:
            print(f"{name} {count} objects: batched / per-object = {batched / single:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--objects", default="1,5,10", help="comma-separated object counts (the smallest is the base)")
    parser.add_argument("--steps", type=int, default=3, help="timed frames per object count")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or any(m not in MODELS for m in models):
        parser.error(f"--models takes {', '.join(MODELS)}, got {args.models!r}")
    try:
        counts = sorted({int(c) for c in args.objects.split(",")})
    except ValueError:
        parser.error(f"--objects takes comma-separated integers, got {args.objects!r}")
    if counts[0] < 1 or len(counts) < 2:
        parser.error("--objects needs at least two counts, each at least 1")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"device={args.device} dtype={args.dtype} frame={args.width}x{args.height} "
          f"threads={torch.get_num_threads()} steps={args.steps} warmup={args.warmup}")
    for name in models:
        image_size, results = measure(name, args, counts)
        report(name, image_size, results)


if __name__ == "__main__":
    main()
