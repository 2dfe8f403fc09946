"""Writing a trained model as a checkpoint folder the normal loader reads.

The folder holds what ``load_unipixel`` expects of any UniPixel checkpoint
(``config.json``, ``model.safetensors``, the tokenizer and processor files) plus
``training_log.json``: the seed, the recipe and what each stage did, and the training-only
attribute prompts (:mod:`unipixel_ros.training.attributes`) a later run continues with.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from unipixel_ros.model.loader import resolve_dtype
from unipixel_ros.training.attributes import AttributePrompts
from unipixel_ros.training.recipe import Recipe
from unipixel_ros.training.trainer import StageReport

TRAINING_LOG = "training_log.json"


def save_checkpoint(model: torch.nn.Module, processor, folder: str | Path, dtype: str = "fp16",
                    seed: int | None = None, recipe: Recipe | None = None,
                    reports: list[StageReport] = (), extra: dict | None = None,
                    attributes: AttributePrompts | None = None) -> Path:
    """Save ``model`` (cast to ``dtype`` for storage; the model itself is left as it is) and ``processor``,
    with the training-only ``attributes`` table when given (float32, a few kB)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    state = {k: (v.to(resolve_dtype(dtype)) if v.is_floating_point() else v)
             for k, v in model.state_dict().items() if k not in tied}
    model.save_pretrained(str(folder), state_dict=state)
    processor.save_pretrained(str(folder))
    if attributes is not None:
        attributes.save(folder)
    log = {
        "seed": seed,
        "dtype": dtype,
        "recipe": [dataclasses.asdict(s) for s in recipe.stages] if recipe is not None else None,
        "stages": [dataclasses.asdict(r) for r in reports],
        **(extra or {}),
    }
    (folder / TRAINING_LOG).write_text(json.dumps(log, indent=2) + "\n")
    return folder


def read_training_log(folder: str | Path) -> dict:
    """The ``training_log.json`` of a checkpoint folder (empty when it has none)."""
    path = Path(folder) / TRAINING_LOG
    return json.loads(path.read_text()) if path.is_file() else {}
