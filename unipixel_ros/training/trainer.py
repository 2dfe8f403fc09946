"""The training loop: seeded synthetic examples, UniPixel's forward pass with its losses, staged optimisation.

One step draws a batch of examples of one clip length and frame size, runs the
language model on each (batch of one, as the model serves requests), then runs
SAM 2 once for every object of the batch that has a mask target: the ``<SEG>``
seeds of text referring and pre-fill passes (frame 0, as at inference) and the
clicks / boxes of click-to-segment examples (their own frame), each object tracked
through its clip with its own memory. Everything runs with the model in eval mode
(no dropout), so training computes exactly what inference computes.
"""
from __future__ import annotations

import math
import time
import zlib
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from unipixel_ros.decoders.graph import seed_prompt
from unipixel_ros.geometry import upsample_mask_logits
from unipixel_ros.model.modeling import PixelQwen2_5_VLForConditionalGeneration, _captured_inputs
from unipixel_ros.model.sam2_engine import Sam2Engine
from unipixel_ros.prompts import PointPrompt
from unipixel_ros.synthetic import RequestKind, random_request, random_video
from unipixel_ros.synthetic.requests import MIN_PROMPT_PIXELS, RequestUnavailable, _make_prompt
from unipixel_ros.training.attributes import AttributeExample, AttributePrompts, attribute_example
from unipixel_ros.training.grounding import (GroundingError, LastLayerView, PlaceProbe, cell_centres, click_token,
                                            last_layer_view, point_seed, pointing_loss, target_cells)
from unipixel_ros.training.formatting import (ChatExample, ClickExample, caption_example, prompted_examples,
                                              text_referring_example)
from unipixel_ros.training.losses import (FIT_BEST, FIT_KEPT, LossWeights, MaskLossTerms, frame_mask_losses,
                                          language_loss, seed_loss)
from unipixel_ros.training.recipe import PARAMETER_GROUPS, Recipe, Stage
from unipixel_ros.training.region_probe import RegionProbe
from unipixel_ros.training.sam2_path import FrameFeatures, encode_frames, segment_clip

WARMUP_FRACTION = 0.03
# The vision tower and the <|mem|> projector learn at this fraction of a stage's rate. Their
# MLPs read the merger's RMS-normed 256-wide patch features, which share a large mean
# (L1 norm ~50 over tokens); Adam moves each weight by about the rate per step whatever the
# gradient's size, so at the stage's rate every step shifts all video and <|mem|> embeddings
# together by ~rate x 50 per coordinate. That shared shift random-walks (norm 0.6 -> 50-70 in
# the language stages at 1e-3 to 2e-3), the embeddings end up with cosine 0.99 to their mean,
# and behind the language model's RMSNorm their per-object content (colour) is a few percent
# of what it reads: the content is there (a standardised linear probe finds it) but the
# language model does not learn to use it. At a tenth of the rate the embeddings keep their
# scale and spread (norm ~1.4, cosine 0.44 after 300 steps).
VISION_FEATURE_LR_SCALE = 0.1
VISION_FEATURE_GROUPS = ("vision", "memory_projector")
VIDEO_CLICK_OBJECTS = 2
QUESTION_KINDS = [RequestKind.POINT_QUESTION, RequestKind.BOX_QUESTION, RequestKind.MULTI_OBJECT, RequestKind.PIXEL_QA]
OBJECT_QUESTION_KINDS = [RequestKind.POINT_QUESTION, RequestKind.BOX_QUESTION]   # one prompted object each
GRAD_CLIP_NORM = 1.0


class TrainingError(ValueError):
    """A training setting that cannot run."""


# ----------------------------------------------------------------- examples


class ExampleSource:
    """Draws formatted training examples from a seeded generator."""

    def __init__(self, processor, sam_image_size: int, rng: np.random.Generator) -> None:
        self.processor = processor
        self.sam_image_size = sam_image_size
        self.rng = rng

    def _request(self, kinds: list[RequestKind], frames: int, size: tuple[int, int]):
        kind = kinds[int(self.rng.integers(len(kinds)))]
        return random_request(self.rng, kind, num_frames=frames, width=size[0], height=size[1])

    def draw(self, kind: str, frames: int, size: tuple[int, int]) -> list[ChatExample | ClickExample | AttributeExample]:
        """One request of ``kind`` as the examples it trains (two passes for a prompted question)."""
        if kind == "click":
            return self._clicks(frames, size)
        if kind == "attribute":
            return [self._attributes(frames, size)]
        if kind == "caption":
            request = self._request(OBJECT_QUESTION_KINDS, frames, size)
            return [caption_example(self.processor, request, self.sam_image_size)]
        if kind in ("answer", "object_answer"):
            kinds = QUESTION_KINDS if kind == "answer" else OBJECT_QUESTION_KINDS
            while True:  # a question about prompted objects (multi-object requests may name them in text)
                request = self._request(kinds, frames, size)
                if request.prompts:
                    return [prompted_examples(self.processor, request, self.sam_image_size)[1]]
        if kind == "text":
            request = self._request([RequestKind.TEXT_REFERRING] * 3 + [RequestKind.MULTI_OBJECT], frames, size)
        else:
            request = self._request(QUESTION_KINDS, frames, size)
        if request.prompts:
            return list(prompted_examples(self.processor, request, self.sam_image_size))
        return [text_referring_example(self.processor, request)]

    def _attributes(self, frames: int, size: tuple[int, int]) -> AttributeExample:
        """A fresh clip's objects seeded by their attributes (at most ``VIDEO_CLICK_OBJECTS`` on a clip)."""
        for _ in range(100):
            example = attribute_example(random_video(self.rng, frames, *size), self.rng,
                                        limit=VIDEO_CLICK_OBJECTS if frames > 1 else None)
            if example is not None:
                return example
        raise RequestUnavailable("no clip with an object visible on its first frame in 100 draws")

    def _clicks(self, frames: int, size: tuple[int, int]) -> list[ClickExample]:
        """Well-visible objects of a fresh clip, prompted on one frame by a point or a box each.

        An image prompts every object (one image encoding serves them all); a clip at
        most ``VIDEO_CLICK_OBJECTS``, since tracking costs a memory attention per object.
        """
        for _ in range(100):
            video = random_video(self.rng, frames, *size)
            frame = int(self.rng.integers(frames))
            objects = np.flatnonzero(video.masks[:, frame].sum(axis=(1, 2)) >= MIN_PROMPT_PIXELS)
            if frames > 1 and objects.size > VIDEO_CLICK_OBJECTS:
                objects = self.rng.choice(objects, size=VIDEO_CLICK_OBJECTS, replace=False)
            if objects.size:
                kind = "point" if self.rng.random() < 0.5 else "box"
                return [ClickExample(video.images, _make_prompt(video, int(k), 0, kind, self.rng, frame=frame),
                                     video.masks[k]) for k in objects]
        raise RequestUnavailable("no clip with a visible object in 100 draws")


# ----------------------------------------------------------------- forward pass


@dataclass
class ChatOutput:
    lm_loss: torch.Tensor
    seg_tokens: torch.Tensor  # [N, S, C], one per <|seg|> in the text
    memory_features: torch.Tensor | None = None  # [M, D] pooled region features, one per <|mem|>


def chat_forward(model: PixelQwen2_5_VLForConditionalGeneration, example: ChatExample) -> ChatOutput:
    """The language model over one example: its LM loss, the SAM prompt tokens of its ``<|seg|>`` s and
    the pooled region features its ``<|mem|>`` tokens were projected from."""
    inputs = example.inputs
    with _captured_inputs(model.msk_proj) as pooled:
        embeds = model.embed_inputs(inputs)
    positions, _ = model.position_ids(inputs)
    language_model = model.model.language_model
    with _captured_inputs(language_model.norm) as pre_norm:
        out = language_model(inputs_embeds=embeds, position_ids=positions.to(embeds.device), use_cache=False)
    logits = model.lm_head(out.last_hidden_state)[0]
    loss = language_loss(logits, example.labels.to(logits.device))
    hidden = pre_norm[-1][0]
    seg = model.seg_tokens(hidden[model._seg_predictor_positions(inputs.input_ids)])
    return ChatOutput(loss, seg, pooled[0] if pooled else None)


@dataclass
class _SamJob:
    """Objects of one batch that SAM 2 segments together: same seed frame and prompt form."""

    seed: int
    multimask: bool
    prompts: list[torch.Tensor] = field(default_factory=list)  # [1, P, C] each
    clips: list[int] = field(default_factory=list)             # clip of each object
    targets: list[np.ndarray] = field(default_factory=list)    # [T, H, W] each


def sam_losses(sam2: torch.nn.Module, clips: list[np.ndarray], jobs: list[_SamJob],
               weights: LossWeights) -> MaskLossTerms:
    """Mask terms of every object of ``jobs`` over its clip (clips [T, H, W, 3] of one size).

    With SAM 2 frozen the mask terms train the hypothesis inference keeps (see
    :mod:`unipixel_ros.training.losses`); while it trains, the best-fitting one.
    """
    num_frames, height, width = clips[0].shape[:3]
    fit = FIT_BEST if any(p.requires_grad for p in sam2.parameters()) else FIT_KEPT
    features = encode_frames(sam2, np.concatenate(clips))
    total = MaskLossTerms.zero(features.image_embed.device)
    for job in jobs:
        per_frame: list[FrameFeatures] = [features.select([c * num_frames + t for c in job.clips])
                                          for t in range(num_frames)]
        predictions = segment_clip(sam2, per_frame, job.seed, torch.cat(job.prompts), job.multimask)
        targets = torch.from_numpy(np.stack(job.targets)).to(features.image_embed.device)
        for t, prediction in enumerate(predictions):
            logits = upsample_mask_logits(prediction.logits, height, width)
            total = total + frame_mask_losses(logits, prediction.ious, prediction.object_logits,
                                              targets[:, t].float(), weights, fit)
    return total


# ----------------------------------------------------------------- optimisation


def stage_parameters(model: torch.nn.Module, stage: Stage) -> tuple[list, list]:
    """(non-SAM parameters, SAM parameters) this stage trains; everything else is frozen."""
    prefixes = tuple(p for group in stage.groups for p in PARAMETER_GROUPS[group])
    main, sam = [], []
    for name, parameter in model.named_parameters():
        train = name.startswith(prefixes) and not (name.startswith("sam2.") and stage.sam_lr_scale == 0)
        parameter.requires_grad_(train)
        if train:
            (sam if name.startswith("sam2.") else main).append(parameter)
    return main, sam


def optimizer_groups(model: torch.nn.Module, stage: Stage) -> list[dict]:
    """AdamW parameter groups of a stage with their peak rates: the stage's rate, the vision
    features' share of it (``VISION_FEATURE_LR_SCALE``) and SAM 2's (``sam_lr_scale``)."""
    main, sam = stage_parameters(model, stage)
    prefixes = tuple(p for group in VISION_FEATURE_GROUPS for p in PARAMETER_GROUPS[group])
    vision_ids = {id(p) for n, p in model.named_parameters() if n.startswith(prefixes)}
    groups = [{"params": [p for p in main if id(p) not in vision_ids], "lr": stage.lr},
              {"params": [p for p in main if id(p) in vision_ids], "lr": stage.lr * VISION_FEATURE_LR_SCALE},
              {"params": sam, "lr": stage.lr * stage.sam_lr_scale}]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over the first 3 % of the steps, then cosine decay to zero."""
    warmup = max(1, math.ceil(WARMUP_FRACTION * steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class StageReport:
    """What one stage did: its wall and CPU time (all threads) and the mean losses of its
    last quarter of steps. On a shared machine the CPU time is the better measure of cost."""

    name: str
    steps: int
    seconds: float
    cpu_seconds: float
    losses: dict[str, float]


class Trainer:
    """Runs a recipe on a model; every random draw comes from ``seed``."""

    def __init__(self, model: PixelQwen2_5_VLForConditionalGeneration, processor, seed: int,
                 weights: LossWeights = LossWeights(), progress: bool = True,
                 log: Callable[[str], None] = print, attributes: AttributePrompts | None = None) -> None:
        """``attributes``: the attribute prompts SAM 2 learnt in earlier stages (a checkpoint's);
        None starts a fresh table, which the language stages use only once a stage trained it."""
        self.model = model
        self.processor = processor
        self.seed = seed
        self.weights = weights
        self.progress = progress
        self.log = log
        self.engine = Sam2Engine(model.sam2)
        self.attributes_learnt = attributes is not None
        self.attributes = (attributes or AttributePrompts(int(model.sam2.sam_prompt_embed_dim), seed)).to(
            model.sam2.no_mem_embed.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.region_probe = RegionProbe(int(model.msk_proj[0].in_features)).to(model.sam2.no_mem_embed.device)
            self.place_probe = PlaceProbe(int(model.config.text_config.hidden_size),
                                          int(model.sam2.sam_prompt_embed_dim)).to(model.sam2.no_mem_embed.device)
        self._cell_tokens: dict[tuple[int, ...], torch.Tensor] = {}
        self.region_probe.requires_grad_(False)
        self.place_probe.requires_grad_(False)
        self.grounding = False

    def run(self, recipe: Recipe, after_stage: Callable[[StageReport], None] | None = None) -> list[StageReport]:
        """Run every stage; ``after_stage`` sees each finished stage (e.g. to save a checkpoint)."""
        reports = []
        for stage in recipe.stages:
            reports.append(self.run_stage(stage))
            if after_stage is not None:
                after_stage(reports[-1])
        return reports

    def run_stage(self, stage: Stage) -> StageReport:
        """Train one stage. Its random draws depend on the seed and the stage's name only, so a
        recipe run stage by stage (saving fp32 checkpoints in between) gives the same weights."""
        if stage.grounding and ("language_model" not in stage.groups
                                or (stage.sam_lr_scale > 0 and "sam2" in stage.groups)):
            raise TrainingError(f"stage {stage.name}: the grounding terms need the language model training "
                                "and SAM 2 frozen (their targets are SAM 2's prompt tokens)")
        stream = zlib.crc32(stage.name.encode())
        rng = np.random.default_rng((self.seed, stream))
        torch.manual_seed(self.seed * 2**32 + stream)
        source = ExampleSource(self.processor, int(self.model.sam2.image_size), rng)
        if stage.prompt_encoder_from_sam:
            self.model.ref_encoder.load_state_dict(self.model.sam2.sam_prompt_encoder.state_dict())
        groups = optimizer_groups(self.model, stage)
        learns_attributes = stage.mix.get("attribute", 0) > 0
        if learns_attributes:
            if stage.sam_lr_scale == 0 or "sam2" not in stage.groups:
                raise TrainingError(f"stage {stage.name} draws attribute prompts but does not train SAM 2")
            groups.append({"params": list(self.attributes.parameters()), "lr": stage.lr * stage.sam_lr_scale})
        self.attributes.requires_grad_(learns_attributes)
        # The probe trains wherever the features it reads do (answers and prompted questions pool regions).
        probes = bool(set(VISION_FEATURE_GROUPS) & set(stage.groups)) and bool(
            {"object_answer", "answer", "prompted"} & set(stage.mix))
        if probes:
            groups.append({"params": list(self.region_probe.parameters()), "lr": stage.lr})
        self.region_probe.requires_grad_(probes)
        self.grounding = stage.grounding
        if stage.grounding:
            self._cell_tokens.clear()
            groups.append({"params": list(self.place_probe.parameters()), "lr": stage.lr})
        self.place_probe.requires_grad_(stage.grounding)
        trained = [p for g in groups for p in g["params"]]
        optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
        peaks = [g["lr"] for g in optimizer.param_groups]
        kinds, weights = zip(*stage.mix.items())
        probabilities = np.asarray(weights, dtype=np.float64) / sum(weights)
        history: dict[str, list[float]] = defaultdict(list)
        started, cpu_started = time.perf_counter(), time.process_time()
        bar = tqdm(range(stage.steps), desc=f"stage {stage.name}", unit="step", disable=not self.progress)
        for step in bar:
            for group, peak in zip(optimizer.param_groups, peaks):
                group["lr"] = peak * lr_factor(step, stage.steps)
            frames = int(rng.choice(stage.frames))
            size = stage.sizes[int(rng.integers(len(stage.sizes)))]
            examples: list[ChatExample | ClickExample] = []
            for _ in range(stage.batch):
                examples += source.draw(str(rng.choice(kinds, p=probabilities)), frames, size)
            losses = self.step(examples)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(trained, GRAD_CLIP_NORM)
            optimizer.step()
            for key, value in losses.items():
                history[key].append(float(value.detach()))
            if self.progress and (step % 10 == 0 or step == stage.steps - 1):
                bar.set_postfix({k: f"{np.mean(v[-50:]):.3f}" for k, v in history.items() if k != "total"})
        optimizer.zero_grad(set_to_none=True)
        self.region_probe.requires_grad_(False)
        self.place_probe.requires_grad_(False)
        self.grounding = False
        self.attributes_learnt |= learns_attributes
        self.attributes.requires_grad_(False)    # only a stage that draws attribute prompts moves them
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        tail = max(1, stage.steps // 4)
        report = StageReport(stage.name, stage.steps, seconds, cpu_seconds,
                             {k: float(np.mean(v[-tail:])) for k, v in history.items()})
        self.log(f"stage {stage.name}: {stage.steps} steps in {seconds:.0f} s ({cpu_seconds:.0f} CPU s); "
                 + ", ".join(f"{k} {v:.3f}" for k, v in report.losses.items()))
        return report

    def step(self, examples: list[ChatExample | ClickExample | AttributeExample]) -> dict[str, torch.Tensor]:
        """Losses of one batch (all clips share length and frame size)."""
        lm_losses: list[torch.Tensor] = []
        seed_losses: list[torch.Tensor] = []
        region_losses: list[torch.Tensor] = []
        grounding_losses: dict[str, list[torch.Tensor]] = defaultdict(list)
        probing = any(p.requires_grad for p in self.region_probe.parameters())
        clips: list[np.ndarray] = []
        clip_of: dict[int, int] = {}
        # Click prompts (2 or 3 tokens) and <SEG> seeds (padding + seg tokens) differ in length,
        # so they never share a SAM 2 call even on the same seed frame.
        jobs: dict[tuple[str, int, bool], _SamJob] = {}

        def clip_index(frames: np.ndarray) -> int:
            key = id(frames)
            if key not in clip_of:
                clip_of[key] = len(clips)
                clips.append(frames)
            return clip_of[key]

        sam2 = self.model.sam2
        for example in examples:
            if isinstance(example, AttributeExample):
                # Seeded on frame 0 in the <SEG> slots, as text referring is: one SAM 2 call with those.
                job = jobs.setdefault(("seg", 0, True), _SamJob(0, sam2._use_multimask(True, None)))
                clip = clip_index(example.frames)
                for tokens, masks in zip(self.attributes.tokens(example.attributes), example.masks):
                    job.prompts.append(seed_prompt(sam2, tokens.unsqueeze(0)))
                    job.clips.append(clip)
                    job.targets.append(masks)
                continue
            if isinstance(example, ClickExample):
                prompt = example.prompt
                width, height = example.frames.shape[2], example.frames.shape[1]
                if isinstance(prompt, PointPrompt):
                    sparse, multimask = self.engine.click_prompt(width, height, points=[(prompt.x, prompt.y)],
                                                                 labels=[1])
                else:
                    sparse, multimask = self.engine.click_prompt(width, height,
                                                                 box=(prompt.x0, prompt.y0, prompt.x1, prompt.y1))
                job = jobs.setdefault(("click", prompt.frame_index, multimask),
                                      _SamJob(prompt.frame_index, multimask))
                job.prompts.append(sparse)
                job.clips.append(clip_index(example.frames))
                job.targets.append(example.masks)
                continue
            grounded = self.grounding and example.seg_masks is not None
            with last_layer_view(self.model.model.language_model) if grounded else nullcontext() as views:
                out = chat_forward(self.model, example)
            if grounded:
                for key, value in self.grounding_terms(example, out, views[-1]).items():
                    grounding_losses[key].append(value)
            lm_losses.append(out.lm_loss)
            if probing and example.memory_attributes is not None and out.memory_features is not None:
                region_losses.append(self.region_probe.loss(out.memory_features, example.memory_attributes))
            if example.seg_masks is None:
                continue
            if out.seg_tokens.shape[0] != len(example.seg_masks):
                raise TrainingError(f"{out.seg_tokens.shape[0]} <|seg|> tokens for {len(example.seg_masks)} masks")
            if example.seed_attributes is not None and self.attributes_learnt:
                targets = self.attributes.tokens(example.seed_attributes).detach()
                seed_losses.append(seed_loss(out.seg_tokens, targets.to(out.seg_tokens.device)))
            job = jobs.setdefault(("seg", 0, True), _SamJob(0, sam2._use_multimask(True, None)))
            clip = clip_index(example.frames)
            for tokens, masks in zip(out.seg_tokens, example.seg_masks):
                job.prompts.append(seed_prompt(sam2, tokens.unsqueeze(0)))
                job.clips.append(clip)
                job.targets.append(masks)

        zero = torch.zeros((), device=sam2.no_mem_embed.device)
        lm = torch.stack(lm_losses).mean() if lm_losses else zero
        seeds = torch.stack(seed_losses).mean() if seed_losses else zero
        regions = torch.stack(region_losses).mean() if region_losses else zero
        grounding = {k: torch.stack(grounding_losses[k]).mean() if grounding_losses[k] else zero
                     for k in ("place", "pointing", "seeding")}
        terms = sam_losses(sam2, clips, list(jobs.values()), self.weights) if jobs else MaskLossTerms.zero(zero.device)
        mask = terms.weighted(self.weights)
        count = max(terms.objects, 1)
        total = (self.weights.lm * lm + self.weights.seed * seeds + self.weights.region * regions + mask
                 + sum(getattr(self.weights, k) * v for k, v in grounding.items()))
        shown = {k: v.detach() for k, v in grounding.items()} if self.grounding else {}
        return {"total": total, "lm": lm.detach(), **shown, "seed": seeds.detach(), "region": regions.detach(),
                "focal": terms.focal.detach() / count, "dice": terms.dice.detach() / count,
                "iou": terms.iou.detach() / count, "objectness": terms.objectness.detach() / count}

    def cell_tokens(self, grid: tuple[int, int, int], width: int, height: int) -> torch.Tensor:
        """SAM 2's click token of every vision token's cell centre, [grid_t * cells, C] in sequence order
        (the place probe's targets; SAM 2 is frozen in a stage that uses them, so they are kept per grid)."""
        key = (*grid, width, height)
        if key not in self._cell_tokens:
            with torch.no_grad():
                tokens = torch.stack([click_token(self.engine, float(x), float(y), width, height)
                                      for x, y in cell_centres(grid[1:], width, height)])
            self._cell_tokens[key] = tokens.repeat(grid[0], 1)
        return self._cell_tokens[key]

    def grounding_terms(self, example: ChatExample, out: ChatOutput, view: LastLayerView) -> dict[str, torch.Tensor]:
        """The grounding aids of one pass with ``<|seg|>`` targets (:mod:`unipixel_ros.training.grounding`).

        Targets absent from the seed frame (frame 0) give no pointing or seeding term.
        """
        # Frames reach the language model as video tokens (images too: one-frame clips).
        vision = torch.nonzero(example.inputs.input_ids[0] == self.model.config.video_token_id).flatten()
        grid = tuple(int(v) for v in example.inputs.video_grid_thw[0])
        places = self.cell_tokens(grid, example.frames.shape[2], example.frames.shape[1])
        if vision.numel() != places.shape[0]:
            raise GroundingError(f"{vision.numel()} vision tokens for a {grid} grid")
        terms = {"place": self.place_probe.loss(view.states[vision.to(view.states.device)], places)}
        queries = self.model._seg_predictor_positions(example.inputs.input_ids)
        seen = [i for i, masks in enumerate(example.seg_masks) if masks[0].any()]
        if seen:
            cells = [target_cells(example.seg_masks[i][0], grid[1:]) for i in seen]
            terms["pointing"] = pointing_loss(view.attention, queries[seen], vision, cells)
            with torch.no_grad():
                seeds = torch.stack([point_seed(self.engine, example.seg_masks[i][0]) for i in seen])
            terms["seeding"] = seed_loss(out.seg_tokens[seen], seeds.to(out.seg_tokens.device))
        return terms
