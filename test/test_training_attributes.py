"""Attribute prompts: what a request's words name, the table SAM 2 learns, and the seed term that uses it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unipixel_ros.synthetic import RequestKind, random_request
from unipixel_ros.synthetic.requests import RequestUnavailable
from unipixel_ros.training.attributes import (AttributePrompts, Attributes, attribute_example, naming_forms,
                                              phrase_attributes, request_attributes)
from unipixel_ros.training.formatting import text_referring_example
from unipixel_ros.training.recipe import DEFAULT_RECIPE, RECIPES, Stage, build_untrained_model
from unipixel_ros.training.trainer import ExampleSource, Trainer, stage_parameters


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _text_requests(kind: RequestKind, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        try:
            request = random_request(rng, kind, num_frames=1, width=96, height=72)
        except RequestUnavailable:
            continue
        if request.expression is not None and not request.prompts:
            found.append(request)
    return found


def test_phrases_name_what_they_say():
    assert phrase_attributes("the red shape") == Attributes("red", None)
    assert phrase_attributes("the circle") == Attributes(None, "circle")
    assert phrase_attributes("the purple hexagon") == Attributes("purple", "hexagon")
    assert phrase_attributes("the thing") is None
    with pytest.raises(ValueError, match="names a colour, a shape or both"):
        Attributes(None, None)
    with pytest.raises(ValueError, match="unknown colour"):
        Attributes("mauve", None)


def test_text_requests_seed_each_named_object_by_its_own_attributes():
    relations = attributes = 0
    for request in _text_requests(RequestKind.TEXT_REFERRING, 60):
        (seed,) = request_attributes(request)
        target = request.video.scene.objects[request.object_ids[0]]
        if request.expression.startswith("the shape "):      # a relation: the target's own colour and shape
            assert seed == Attributes(target.colour, target.shape)
            relations += 1
        else:                                                # what the phrase says, true of the target
            assert seed.colour in (None, target.colour) and seed.shape in (None, target.shape)
            assert seed == phrase_attributes(request.expression)
            attributes += 1
    assert relations and attributes
    for request in _text_requests(RequestKind.MULTI_OBJECT, 10):
        objects = request.video.scene.objects
        assert request_attributes(request) == [Attributes(objects[o].colour, objects[o].shape)
                                               for o in request.object_ids]
    example = text_referring_example(build_untrained_model(0)[1], _text_requests(RequestKind.TEXT_REFERRING, 1)[0])
    assert example.seed_attributes is not None and len(example.seed_attributes) == len(example.seg_masks)


def test_an_attribute_example_names_each_object_uniquely_in_its_scene():
    rng = np.random.default_rng(4)
    request = _text_requests(RequestKind.TEXT_REFERRING, 1, seed=4)[0]
    video = request.video
    example = attribute_example(video, rng)
    assert example is not None and len(example.attributes) == len(example.masks)
    objects = video.scene.objects
    for attributes, masks in zip(example.attributes, example.masks):
        matching = [k for k, o in enumerate(objects) if attributes.colour in (None, o.colour)
                    and attributes.shape in (None, o.shape)]
        assert len(matching) == 1 and np.array_equal(video.masks[matching[0]], masks)
    for k in range(video.num_objects):
        assert all(len([o for o in objects if f.colour in (None, o.colour) and f.shape in (None, o.shape)]) == 1
                   for f in naming_forms(video, k))


def test_the_table_gives_two_tokens_per_object_and_saves_and_loads(tmp_path):
    table = AttributePrompts(16, seed=3)
    tokens = table.tokens([Attributes("red", "circle"), Attributes("red", None), Attributes(None, "circle")])
    assert tokens.shape == (3, 2, 16)
    assert torch.equal(tokens[0, 0], tokens[1, 0]) and torch.equal(tokens[0, 1], tokens[2, 1])
    assert not torch.equal(tokens[1, 1], tokens[0, 1])          # "any shape" is its own token
    assert AttributePrompts.load(tmp_path, 16) is None
    table.save(tmp_path)
    loaded = AttributePrompts.load(tmp_path, 16)
    assert torch.equal(loaded.colour, table.colour) and torch.equal(loaded.shape, table.shape)
    with pytest.raises(ValueError, match="expected"):
        AttributePrompts.load(tmp_path, 32)


def test_sam_learns_the_table_and_text_seeds_are_pulled_towards_it():
    model, processor = build_untrained_model(0)
    source = ExampleSource(processor, int(model.sam2.image_size), np.random.default_rng(1))
    trainer = Trainer(model, processor, seed=0, progress=False, log=lambda _: None)
    text = source.draw("text", 1, (96, 72))
    assert float(trainer.step(text)["seed"]) == 0.0            # no table learnt yet: no seed term

    before = trainer.attributes.colour.detach().clone()
    trainer.run_stage(Stage("attr", steps=2, batch=1, lr=1e-3, mix={"attribute": 1.0}, frames=(1,),
                            groups=("sam2",), sizes=((96, 72),)))
    assert trainer.attributes_learnt and not torch.equal(before, trainer.attributes.colour)
    stage_parameters(model, Stage("text", 1, 1, 1e-3, {"text": 1.0}, (1,), sam_lr_scale=0.0))
    losses = trainer.step(text)
    assert float(losses["seed"]) > 0
    losses["total"].backward()
    assert trainer.attributes.colour.grad is None                # the language stages do not move the table
    assert model.seg_head[1].weight.grad is not None and model.seg_head[1].weight.grad.abs().sum() > 0

    with pytest.raises(ValueError, match="does not train SAM 2"):
        trainer.run_stage(Stage("bad", steps=1, batch=1, lr=1e-3, mix={"attribute": 1.0}, frames=(1,),
                                groups=("seg_head",), sizes=((96, 72),)))


def test_the_attribute_seed_recipe_teaches_attributes_only_where_sam_trains():
    recipe = RECIPES["attribute-seeds"]
    assert [s.name for s in recipe.stages] == [s.name for s in DEFAULT_RECIPE.stages]
    teaching = [s for s in recipe.stages if s.mix.get("attribute", 0) > 0]
    assert [s.name for s in teaching] == ["sam", "track"]
    assert all("sam2" in s.groups and s.sam_lr_scale > 0 for s in teaching)
    assert not any("attribute" in s.mix for s in DEFAULT_RECIPE.stages)
