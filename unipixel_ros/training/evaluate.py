"""Held-out evaluation through the pipeline: ``python -m unipixel_ros.training.evaluate --model DIR``.

Requests are drawn from a seed the training never uses and run exactly as the node
runs them (:class:`unipixel_ros.pipeline.UniPixelPipeline`). Scores, per category:

* ``text_image`` / ``text_video``: text referring; mask IoU per object (mean over the
  clip's frames), also split by phrase type (an attribute name such as "the red
  circle", or a relation to another shape), and J&F on videos (J: region IoU, F:
  boundary F-measure with the DAVIS tolerance of 0.8 % of the image diagonal);
* ``point`` / ``box``: a question about a point / box prompted object; the pre-fill
  pass's mask IoU and the answer's accuracy per question type (colour, shape, name);
* ``click`` / ``click_box``: click-to-segment (SAM 2 alone) on a random frame; IoU
  over the clip;
* ``pixel_qa``: questions about a prompted object's whole track; answer accuracy;
* ``memory``: the point questions asked about an object the memory bank holds with its
  true masks (as the node asks about a tracked object, a ``MemoryPrompt``), so the answer
  reads the ``<|mem|>`` tokens of the right region whatever the pre-fill pass would
  have segmented; answer accuracy per question type.

Throughput is requests per second per category.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.prompts import MemoryPrompt
from unipixel_ros.scoring import clip_scores, mask_iou
from unipixel_ros.synthetic import RequestKind, SyntheticRequest, answer_matches, random_request
from unipixel_ros.synthetic.scenes import DEFAULT_HEIGHT, DEFAULT_WIDTH

HELD_OUT_SEED = 20_250_917
CATEGORIES = ("text_image", "text_video", "point", "box", "click", "click_box", "pixel_qa", "memory")
# Relational referring phrases name the target only by its place: "the shape to the left of ...".
RELATION_PREFIX = "the shape "
_QUESTION_TYPES = {"What colour is [0]?": "colour", "What shape is [0]?": "shape", "What is [0]?": "name"}


class EvaluationError(ValueError):
    """An evaluation setting that cannot run."""


def expression_type(expression: str) -> str:
    """``relation`` for "the shape left of the blue square", ``attribute`` for "the red circle"."""
    return "relation" if expression.startswith(RELATION_PREFIX) else "attribute"


@dataclass
class CategoryScores:
    """Scores of one category: per-request IoU, J, F and answer correctness."""

    requests: int = 0
    seconds: float = 0.0
    iou: list[float] = field(default_factory=list)
    j: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)
    answers: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    by_expression: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict:
        out: dict = {"requests": self.requests,
                     "requests_per_second": self.requests / self.seconds if self.seconds else 0.0}
        if self.iou:
            out["mean_iou"] = float(np.mean(self.iou))
        if self.j:
            out["j"], out["f"] = float(np.mean(self.j)), float(np.mean(self.f))
            out["j_and_f"] = (out["j"] + out["f"]) / 2
        for kind, ious in sorted(self.by_expression.items()):
            out[f"mean_iou_{kind}"] = float(np.mean(ious))
            out[f"share_{kind}"] = len(ious) / len(self.iou)
        for kind, correct in sorted(self.answers.items()):
            out[f"accuracy_{kind}"] = float(np.mean(correct))
        return out


def held_out_requests(category: str, count: int, seed: int = HELD_OUT_SEED, width: int = DEFAULT_WIDTH,
                      height: int = DEFAULT_HEIGHT) -> list[SyntheticRequest]:
    """``count`` requests of one category, reproducible from ``seed``."""
    if category not in CATEGORIES:
        raise EvaluationError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    rng = np.random.default_rng((seed, CATEGORIES.index(category)))
    kind, frames = {
        "text_image": (RequestKind.TEXT_REFERRING, lambda: 1),
        "text_video": (RequestKind.TEXT_REFERRING, lambda: int(rng.integers(4, 9))),
        "point": (RequestKind.POINT_QUESTION, lambda: int(rng.choice([1, 1, 4, 6]))),
        "box": (RequestKind.BOX_QUESTION, lambda: int(rng.choice([1, 1, 4, 6]))),
        "click": (RequestKind.POINT_QUESTION, lambda: int(rng.integers(4, 9))),
        "click_box": (RequestKind.BOX_QUESTION, lambda: int(rng.integers(4, 9))),
        "pixel_qa": (RequestKind.PIXEL_QA, lambda: int(rng.choice([1, 4, 6, 8]))),
        "memory": (RequestKind.POINT_QUESTION, lambda: int(rng.choice([1, 1, 4, 6]))),
    }[category]
    return [random_request(rng, kind, num_frames=frames(), width=width, height=height) for _ in range(count)]


def _stamps(request: SyntheticRequest) -> list[int]:
    return [1_000_000_000 + 100_000_000 * i for i in range(request.video.num_frames)]


def evaluate_request(pipeline, category: str, request: SyntheticRequest, scores: CategoryScores) -> None:
    """Run one request through ``pipeline`` and add its scores."""
    frames = list(request.video.images)
    expected = request.masks[0]
    if category.startswith("click"):
        predicted = pipeline.segment_prompt(frames, _stamps(request), request.prompts[0]).masks
    elif category == "memory":
        stamps, memory = _stamps(request), ObjectMemoryBank()
        kept = memory.add("[0]", ((stamp, mask, 1.0) for stamp, mask in zip(stamps, expected)))
        result = pipeline.query(frames, stamps, request.text, [MemoryPrompt(object_index=0, memory_id=kept)],
                                memory=memory)
        scores.answers[_QUESTION_TYPES.get(request.text, "track")].append(answer_matches(result.answer, request.answer))
        return
    else:
        result = pipeline.query(frames, _stamps(request), request.text, request.prompts)
        if request.answer is not None:
            kind = _QUESTION_TYPES.get(request.text, "track")
            scores.answers[kind].append(answer_matches(result.answer, request.answer))
        if category == "pixel_qa":
            return
        predicted = result.objects[0].masks if result.objects else np.zeros_like(expected)
    j, f = clip_scores(predicted, expected)
    scores.iou.append(j)
    if request.expression is not None:
        scores.by_expression[expression_type(request.expression)].append(j)
    if len(frames) > 1:
        scores.j.append(j)
        scores.f.append(f)


def evaluate(pipeline, count: int = 40, seed: int = HELD_OUT_SEED, categories: tuple[str, ...] = CATEGORIES,
             progress: bool = False) -> dict[str, dict]:
    """Scores of every category on ``count`` held-out requests each."""
    from tqdm.auto import tqdm

    results = {}
    for category in categories:
        scores = CategoryScores()
        for request in tqdm(held_out_requests(category, count, seed), desc=category, disable=not progress):
            started = time.perf_counter()
            evaluate_request(pipeline, category, request, scores)
            scores.seconds += time.perf_counter() - started
            scores.requests += 1
        results[category] = scores.summary()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unipixel_ros.training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (or 'tiny')")
    parser.add_argument("--count", type=int, default=100, help="requests per category")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="seed of the held-out requests")
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated categories")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the scores to this file")
    args = parser.parse_args(argv)

    import torch

    from unipixel_ros.pipeline import build_pipeline

    torch.set_num_threads(args.threads)
    pipeline = build_pipeline(args.model, device=args.device, dtype="fp32", log=lambda message: None)
    categories = tuple(c for c in args.categories.split(",") if c)
    results = evaluate(pipeline, args.count, args.seed, categories, progress=True)
    for category, summary in results.items():
        print(f"{category:>10}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in summary.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"seed": args.seed, "count": args.count, "scores": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
