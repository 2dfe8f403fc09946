"""Training cost per stage and evaluation throughput of the synthetic UniPixel.

    python bench/bench_training.py [--model unipixel_ros/data/unipixel-synthetic] [--steps 6] [--count 6]
    python bench/bench_training.py --smoke      # does it run (numbers meaningless)

From one process: a few training steps of every stage of the default recipe (or of
``--stages``), run on a copy of the shipped weights (seconds per step, and each stage's
cost relative to the first stage); the recorded full run (wall time, step count and
final losses per stage, from the checkpoint's training_log.json); then held-out
evaluation requests per second per category (or ``--categories``), relative to the
first, single-image text referring.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from unipixel_ros.model.loader import load_unipixel
from unipixel_ros.pipeline import SYNTHETIC_MODEL_DIR, UniPixelPipeline
from unipixel_ros.training.checkpoint import read_training_log
from unipixel_ros.training.evaluate import CATEGORIES, evaluate
from unipixel_ros.training.recipe import DEFAULT_RECIPE
from unipixel_ros.training.trainer import Trainer

STAGES = tuple(stage.name for stage in DEFAULT_RECIPE.stages)
SMOKE = dict(steps=1, count=1, stages=list(STAGES[:2]), categories=["text_image", "click"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SYNTHETIC_MODEL_DIR))
    parser.add_argument("--steps", type=int, default=6, help="training steps timed per stage")
    parser.add_argument("--count", type=int, default=6, help="evaluation requests per category")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="recipe stages to time (ratios are to the first one given)")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=list(CATEGORIES),
                        help="evaluation categories (ratios are to the first one given)")
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    torch.set_num_threads(args.threads)

    print(f"model={args.model} threads={args.threads}")
    print("training, measured now (from the shipped weights):")
    model, processor = load_unipixel(args.model, dtype="fp32", progress=False)
    trainer = Trainer(model, processor, seed=1, progress=False, log=lambda _: None)
    first = None
    recipe = {stage.name: stage for stage in DEFAULT_RECIPE.stages}
    for stage in (recipe[name] for name in args.stages):
        short = dataclasses.replace(stage, steps=args.steps)
        seconds = trainer.run_stage(short).seconds / args.steps
        first = first or seconds
        print(f"  {stage.name:>7}: {seconds:6.2f} s/step ({seconds / first:4.2f} x {args.stages[0]}), "
              f"{stage.steps} steps -> {seconds * stage.steps / 60:5.1f} min at this rate")

    log = read_training_log(args.model)
    if log.get("stages"):
        print(f"training, recorded full run (seed {log.get('seed')}, {log.get('threads')} threads, "
              f"{log.get('train_seconds', 0) / 60:.1f} min):")
        for stage in log["stages"]:
            losses = ", ".join(f"{k} {v:.3f}" for k, v in stage["losses"].items() if k != "total")
            print(f"  {stage['name']:>7}: {stage['steps']} steps in {stage['seconds'] / 60:5.1f} min; {losses}")

    model, processor = load_unipixel(args.model, dtype="fp32", progress=False)
    pipeline = UniPixelPipeline(model, processor, max_new_tokens=24)
    started = time.perf_counter()
    scores = evaluate(pipeline, count=args.count, categories=tuple(args.categories))
    print(f"evaluation ({args.count} requests per category, {time.perf_counter() - started:.0f} s):")
    base = scores[args.categories[0]]["requests_per_second"]
    for category, summary in scores.items():
        rate = summary["requests_per_second"]
        print(f"  {category:>10}: {rate:6.2f} requests/s ({rate / base:4.2f} x {args.categories[0]})")


if __name__ == "__main__":
    main()
