"""The trainer: schedule, frozen groups, seeded reproducibility, and the CLI's checkpoint loading back."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from unipixel_ros.model.loader import load_unipixel
from unipixel_ros.training.__main__ import main as train_main
from unipixel_ros.training.checkpoint import read_training_log
from unipixel_ros.training.recipe import DEFAULT_RECIPE, RecipeError, Stage, build_untrained_model
from unipixel_ros.training.trainer import ExampleSource, Trainer, lr_factor, stage_parameters


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_learning_rate_warms_up_linearly_then_decays_as_a_cosine():
    # 100 steps: 3 warm-up steps.
    assert [lr_factor(s, 100) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert lr_factor(3, 100) == pytest.approx(1.0)
    assert lr_factor(3 + 97 // 2, 100) == pytest.approx(0.5 * (1 + np.cos(np.pi * 48 / 97)))
    assert lr_factor(99, 100) == pytest.approx(0.5 * (1 + np.cos(np.pi * 96 / 97)))


def test_stages_train_only_their_groups():
    model, _ = build_untrained_model(0)
    main, sam = stage_parameters(model, Stage("s", 1, 1, 1e-3, {"click": 1.0}, (1,), groups=("sam2",)))
    assert not main and sam and all(p.requires_grad for p in sam)
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("sam2."))
    main, sam = stage_parameters(model, Stage("s", 1, 1, 1e-3, {"text": 1.0}, (1,), sam_lr_scale=0.0))
    assert not sam and not any(p.requires_grad for p in model.sam2.parameters())
    assert any(n.startswith("seg_head.") for n, p in model.named_parameters() if p.requires_grad)


def test_recipe_selection_and_scaling():
    assert [s.name for s in DEFAULT_RECIPE.only(["align", "sam"]).stages] == ["sam", "align"]
    assert [s.steps for s in DEFAULT_RECIPE.scaled(0.01).stages] == [max(1, round(s.steps * 0.01))
                                                                     for s in DEFAULT_RECIPE.stages]
    with pytest.raises(RecipeError, match="unknown stages"):
        DEFAULT_RECIPE.only(["pretrain"])
    with pytest.raises(RecipeError, match="unknown parameter groups"):
        Stage("s", 1, 1, 1e-3, {"text": 1.0}, (1,), groups=("everything",))
    with pytest.raises(RecipeError, match="unknown example kinds"):
        Stage("s", 1, 1, 1e-3, {"chat": 1.0}, (1,))


def test_every_example_kind_draws_and_gives_finite_losses():
    model, processor = build_untrained_model(0)
    source = ExampleSource(processor, int(model.sam2.image_size), np.random.default_rng(0))
    trainer = Trainer(model, processor, seed=0, progress=False, log=lambda _: None)
    for kind, frames in (("click", 2), ("caption", 1), ("text", 2), ("prompted", 1)):
        losses = trainer.step(source.draw(kind, frames, (96, 72)))
        assert all(torch.isfinite(v) for v in losses.values()), (kind, losses)
        if kind != "caption":
            assert losses["dice"] > 0, kind
        if kind != "click":
            assert losses["lm"] > 0, kind


def test_clicks_and_seg_seeds_on_the_same_frame_share_a_batch():
    model, processor = build_untrained_model(0)
    source = ExampleSource(processor, int(model.sam2.image_size), np.random.default_rng(2))
    trainer = Trainer(model, processor, seed=0, progress=False, log=lambda _: None)
    examples = []
    while not any(getattr(e, "prompt", None) is not None and e.prompt.frame_index == 0
                  and type(e.prompt).__name__ == "PointPrompt" for e in examples):
        examples = source.draw("click", 1, (96, 72))
    losses = trainer.step(examples + source.draw("text", 1, (96, 72)))
    assert torch.isfinite(losses["total"]) and losses["dice"] > 0


def test_an_answer_stage_trains_the_region_probe_and_through_it_the_vision_features():
    model, processor = build_untrained_model(0)
    trainer = Trainer(model, processor, seed=0, progress=False, log=lambda _: None)
    stage = Stage("answers", steps=1, batch=1, lr=1e-3, mix={"answer": 1.0}, frames=(1,),
                  groups=("language_model", "vision", "memory_projector"), sizes=((96, 72),))
    before = [p.detach().clone() for p in trainer.region_probe.parameters()]
    report = trainer.run_stage(stage)
    assert report.losses["region"] > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.region_probe.parameters()))
    assert not any(p.requires_grad for p in trainer.region_probe.parameters())   # frozen between stages
    # Only the probe's signal reaches the vision tower through the pooled features when the LM loss is off.
    source = ExampleSource(processor, int(model.sam2.image_size), np.random.default_rng(1))
    (injection,) = source.draw("answer", 1, (96, 72))
    trainer.region_probe.requires_grad_(True)
    trainer.weights = dataclasses.replace(trainer.weights, lm=0.0)
    model.zero_grad(set_to_none=True)
    trainer.step([injection])["total"].backward()
    msk_grad = model.msk_proj[0].weight.grad                # msk_proj comes after the pooled features
    assert msk_grad is None or not msk_grad.any()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("model.visual.") and p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def _short(stage: Stage) -> Stage:
    return dataclasses.replace(stage, steps=2, batch=1, frames=(1,), sizes=((96, 72),))


def test_training_is_reproducible_from_the_seed_and_leaves_frozen_parts_alone():
    stage = _short(DEFAULT_RECIPE.only(["align"]).stages[0])
    weights = []
    for _ in range(2):
        model, processor = build_untrained_model(3)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        Trainer(model, processor, seed=3, progress=False, log=lambda _: None).run_stage(stage)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])
    changed = {n for n in before if not torch.equal(before[n], weights[0][n])}
    assert any(n.startswith("seg_head.") for n in changed)
    assert not any(n.startswith("sam2.") for n in changed)


def test_cli_writes_a_checkpoint_the_loader_reads(tmp_path, monkeypatch):
    monkeypatch.setattr("unipixel_ros.training.__main__.DEFAULT_RECIPE",
                        dataclasses.replace(DEFAULT_RECIPE, stages=tuple(_short(s) for s in
                                                          DEFAULT_RECIPE.only(["sam", "prompt"]).stages)))
    assert train_main(["--output", str(tmp_path), "--stages", "sam,prompt", "--threads", "1", "--quiet"]) == 0
    model, processor = load_unipixel(tmp_path, dtype="fp32", progress=False)
    assert model.config.sam2_image_size == 128 and processor.tokenizer.convert_tokens_to_ids("<|seg|>") is not None
    log = read_training_log(tmp_path)
    assert [s["name"] for s in log["stages"]] == ["sam", "prompt"] and log["seed"] == 0
    # A run continued from it keeps the stages and the recipe behind it.
    more = tmp_path / "more"
    monkeypatch.setattr("unipixel_ros.training.__main__.DEFAULT_RECIPE",
                        dataclasses.replace(DEFAULT_RECIPE, stages=tuple(_short(s) for s in DEFAULT_RECIPE.stages)))
    assert train_main(["--output", str(more), "--init", str(tmp_path), "--stages", "align", "--threads", "1",
                       "--quiet"]) == 0
    log = read_training_log(more)
    assert [s["name"] for s in log["stages_before"]] == ["sam", "prompt"]
    assert [s["name"] for s in log["stages"]] == ["align"]
    assert [s["name"] for s in log["recipe"]] == ["sam", "prompt", "align"]


def test_stages_need_frame_sizes():
    with pytest.raises(RecipeError, match="frame sizes"):
        Stage("x", steps=1, batch=1, lr=1e-3, mix={"click": 1.0}, frames=(1,), sizes=())
