"""Train the synthetic UniPixel: ``python -m unipixel_ros.training --output DIR [--seed N]``.

With the defaults this reproduces the shipped weights (``unipixel_ros/data/unipixel-synthetic``)
from seed 0 on a CPU (same torch version and thread count give the same weights).
``--recipe attribute-seeds`` trains the variant with attribute prompts (model card: not
better at this budget), ``--stages`` runs some stages only, ``--init`` starts from a checkpoint instead of
fresh weights, ``--scale`` multiplies every stage's step count (quick trials).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from unipixel_ros.training.attributes import ATTRIBUTE_FILE, AttributePrompts
from unipixel_ros.training.checkpoint import read_training_log, save_checkpoint
from unipixel_ros.training.recipe import DEFAULT_RECIPE, RECIPES, build_untrained_model
from unipixel_ros.training.trainer import Trainer

DEFAULT_THREADS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unipixel_ros.training", description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of every data draw")
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES),
                        help="default: the shipped weights' recipe; attribute-seeds: SAM 2 also learns colour / "
                             "shape prompts that text seeds are pulled towards (see the model card)")
    parser.add_argument("--stages", default=",".join(s.name for s in DEFAULT_RECIPE.stages),
                        help="comma-separated stages to run, in recipe order")
    parser.add_argument("--init", default=None, help="checkpoint folder to start from (default: fresh weights)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every stage's step count")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="CPU threads for torch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="fp16", help="storage dtype of the saved weights (fp16, bf16, fp32)")
    parser.add_argument("--save-stages", default=None,
                        help="also save an fp32 checkpoint after every stage, in this folder's <stage> subfolders "
                             "(a later run can continue from one with --init)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from unipixel_ros.pipeline import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    chosen = DEFAULT_RECIPE if args.recipe == "default" else RECIPES[args.recipe]
    recipe = chosen.only([s for s in args.stages.split(",") if s])
    if args.scale != 1.0:
        recipe = recipe.scaled(args.scale)
    if args.init:
        from unipixel_ros.model.loader import load_unipixel

        model, processor = load_unipixel(args.init, device=device, dtype="fp32", progress=not args.quiet)
        log = read_training_log(args.init)
        earlier = log.get("stages_before", []) + log.get("stages", [])
        # The recipe of a run continued from a checkpoint is the stages behind it, then this run's.
        earlier_recipe = [s for s in log.get("recipe") or [] if s["name"] in {e["name"] for e in earlier}]
        attributes = AttributePrompts.load(args.init, int(model.sam2.sam_prompt_embed_dim))
        if attributes is None:
            print(f"{args.init} has no {ATTRIBUTE_FILE}: text requests train without attribute seeds "
                  "unless a stage here teaches SAM 2 attribute prompts")
    else:
        model, processor = build_untrained_model(args.seed)
        model.to(device)
        earlier, earlier_recipe = [], []
        attributes = None
    whole_recipe = earlier_recipe + [dataclasses.asdict(s) for s in recipe.stages]
    started, cpu_started = time.perf_counter(), time.process_time()
    done: list = []
    trainer = Trainer(model, processor, seed=args.seed, progress=not args.quiet, attributes=attributes)

    def save_stage(report) -> None:
        done.append(report)
        if args.save_stages:
            save_checkpoint(model, processor, Path(args.save_stages) / report.name, dtype="fp32", seed=args.seed,
                            recipe=recipe, reports=list(done),
                            extra={"stages_before": earlier, "recipe": whole_recipe},
                            attributes=trainer.attributes if trainer.attributes_learnt else None)

    reports = trainer.run(recipe, after_stage=save_stage)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    stages = earlier + [r.__dict__ for r in reports]
    folder = save_checkpoint(model, processor, args.output, dtype=args.dtype, seed=args.seed, recipe=recipe, reports=reports,
                             extra={"stages_before": earlier, "recipe": whole_recipe, "train_seconds": seconds,
                                    "train_cpu_seconds": cpu_seconds, "threads": args.threads,
                                    "device": device, "torch": torch.__version__},
                             attributes=trainer.attributes if trainer.attributes_learnt else None)
    print(f"trained {', '.join(s['name'] for s in stages)} in {seconds:.0f} s ({cpu_seconds:.0f} CPU s); "
          f"saved to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
