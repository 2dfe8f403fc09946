"""The synthetic UniPixel: its size, its starting weights and its training stages.

The model is the published architecture at a size that trains on a CPU: a three-layer
language model and a two-block vision tower of Qwen2.5-VL's shape, a byte-level
tokenizer with one token per word of the synthetic requests
(:mod:`unipixel_ros.training.tokenizer`), and the tiny SAM 2.1 (small Hiera, full-width
mask decoder and memory) at a 128-pixel input, decoding one mask per tracked frame
(``SYNTHETIC_SAM2_CONFIG``: its IoU head does not learn to rank three masks by content
at this budget).

Stages follow the UniPixel paper where that makes sense without pretrained parts:

0. ``sam`` and ``track``: SAM 2 learns clicks and boxes on images, then tracking them
   through clips with its memory (the paper starts from a trained SAM 2.1; here it
   has to learn segmentation first);
1. ``answer`` then ``prompt``: the language model and vision tower first learn to answer
   about one object on an image from its ``<|mem|>`` token (colour, shape, name), the
   first step of a curriculum: mixed with several objects, clips and captions from the
   start, the language model did not learn to read the token in 800 steps (model card);
   then the prompt encoder learns region captioning from ``<|ref|>`` tokens
   (the paper's first stage) while the language model and vision tower, also
   untrained here, learn the answers from ``<|mem|>`` tokens;
2. ``align``: text referring and the pre-fill pass teach the seg head to seed the
   frozen SAM 2 (the paper's second stage), with the training-only grounding terms of
   :mod:`unipixel_ros.training.grounding`.

The paper's third stage (every language request kind together) is left out: after
``align`` it cost text referring (mean IoU 0.14 -> 0.10 on images, 0.14-0.17 -> 0.10 on
clips), the pre-fill masks and memory-question colour (0.89 -> 0.87) in every run we made.
SAM 2 stays frozen in the language stages: at this budget, training it on the language
model's still poor ``<SEG>`` seeds cost more click accuracy than it gave the seeds.

The recipe runs in about 31 minutes on 2 CPU cores. The language model learns the answer
formats and to read an object's colour from its ``<|mem|>`` token, and its ``<SEG>`` seeds
land on shapes; within this budget they do not land on the shape the words name, and it
does not read shape (the held-out scores in the model card say how far it gets).

``ATTRIBUTE_SEED_RECIPE`` (``--recipe attribute-seeds``) is the same with SAM 2 also learning
to segment an object from an attribute prompt in its ``<SEG>`` slots (a colour token and a
shape token, :mod:`unipixel_ros.training.attributes`) and the language stages pulling text
seeds towards the prompt the words name, so that SAM 2 rather than the language model would
find the named shape. At this budget it scores lower on clicks and on text (model card).

Two choices make SAM 2 learn from scratch at all in this budget. Its decoder starts
with prompt and image tokens comparing positions (:func:`_align_prompt_attention`),
and its learning rates stay at or below 1e-3 (3e-4 for tracking): above that, the
decoder settles within a few hundred steps on masking every shape whatever the
prompt, a solution it does not leave.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from unipixel_ros.model.chat import (END_OF_TEXT, IM_END, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START)
from unipixel_ros.model.config import SYNTHETIC_SAM2_CONFIG, PixelQwen2_5_VLConfig
from unipixel_ros.model.modeling import PixelQwen2_5_VLForConditionalGeneration
from unipixel_ros.model.tiny import TINY_SPECIAL_TOKENS
from unipixel_ros.prompts import MEM_TOKEN, REF_TOKEN, SEG_TOKEN
from unipixel_ros.training.tokenizer import build_synthetic_processor

SAM2_IMAGE_SIZE = 128
# Base of the language model's M-RoPE frequencies. M-RoPE gives the temporal, vertical and
# horizontal positions consecutive blocks of the frequencies, highest first, so the horizontal
# one gets the lowest. At Qwen2.5-VL's usual 1e4 (head size 32, sections 4 / 6 / 6) they rotate
# a key by at most 0.003 rad per column, 0.04 rad across a frame: the language model could not
# tell columns apart. Image tokens' states then held their row (linear probe R^2 0.85-0.98)
# and not their column (R^2 0.00), and no ``<SEG>`` seed could say where a shape is. At 40
# the horizontal frequencies are 0.03-0.1 rad per column, what the vertical ones had at 1e4.
ROPE_THETA = 40.0
# Initial spread of the (tied) token embeddings. At the language model's 0.02 a word enters the
# residual stream with norm ~0.23, below the video and <|mem|> embeddings around it (~0.65 and
# ~0.5 at initialisation), and after the 400-step answer stage the language model answered every
# "What colour is [0]?" / "What shape is [0]?" with one shape word (teacher-forced colour
# accuracy 0.00): it had not learnt to read the question, let alone the <|mem|> token. From 0.2
# (norm ~2.3) the same stage from the same seed reads colour at 0.97.
TOKEN_EMBEDDING_STD = 0.2
# The vision tower attends within windows of this many pixels (Qwen2.5-VL: 112). UniPixel's
# <|mem|> pooling reads the merger input in window order with a row-order region mask, as
# the published checkpoints were trained; with one window per frame (frames up to 896 px a
# side, such as the 392 x 280 a 320 x 240 camera frame is resized to) the two orders agree
# and a region pools its own tokens.
VISION_WINDOW_PIXELS = 896
# SAM 2 sees every frame at 128 pixels, so its stages train on small frames (rendering and
# mask losses are cheap), in two aspect ratios. The language model sees frames at their own
# size (in 28-pixel cells) and learns at the synthetic camera's 320 x 240.
SAM_FRAME_SIZES: tuple[tuple[int, int], ...] = ((160, 120), (144, 112))
LLM_FRAME_SIZES: tuple[tuple[int, int], ...] = ((320, 240),)

# Parameter groups by module name prefix; a stage trains the groups it names.
PARAMETER_GROUPS: dict[str, tuple[str, ...]] = {
    "sam2": ("sam2.",),
    "prompt_encoder": ("ref_encoder.", "ref_proj_single.", "ref_proj_double.", "ref_proj.", "tem_emb.", "tem_proj."),
    "seg_head": ("seg_head.",),
    "memory_projector": ("msk_proj.",),
    "language_model": ("model.language_model.", "lm_head."),
    "vision": ("model.visual.",),
}
ALL_GROUPS = tuple(PARAMETER_GROUPS)
# What a stage can draw: a bare click / box (SAM 2 alone), objects seeded by their colour / shape
# (SAM 2 alone, :mod:`unipixel_ros.training.attributes`), region captioning from <|ref|>, the
# injection pass's answer alone (of a question about one point / box prompted object, or of any
# prompted question), text referring, and both passes of a prompted question.
EXAMPLE_KINDS = ("click", "attribute", "caption", "object_answer", "answer", "text", "prompted")


class RecipeError(ValueError):
    """A stage or recipe that cannot run (unknown group or request kind, no steps)."""


@dataclass(frozen=True)
class Stage:
    """One training stage.

    ``mix`` weighs the example kinds drawn (``EXAMPLE_KINDS``); ``frames`` lists the clip
    lengths drawn (1 = an image), one per step; ``batch`` requests are drawn per step.
    ``lr`` is the peak learning rate of a linear warm-up (3 % of the steps) and cosine
    decay, as in the paper; SAM 2 trains at ``lr * sam_lr_scale`` (0: frozen) and only
    the parameter ``groups`` named train at all. ``prompt_encoder_from_sam`` starts the
    ``<|ref|>`` prompt encoder as a copy of SAM 2's (same Fourier features, point and
    box embeddings), so a ``<|ref|>`` token begins as the prompt SAM 2 learnt to segment.
    ``grounding`` adds the training-only terms of :mod:`unipixel_ros.training.grounding` to
    every pass with ``<|seg|>`` targets.
    """

    name: str
    steps: int
    batch: int
    lr: float
    mix: dict[str, float]
    frames: tuple[int, ...]
    groups: tuple[str, ...] = ALL_GROUPS
    sam_lr_scale: float = 1.0
    prompt_encoder_from_sam: bool = False
    sizes: tuple[tuple[int, int], ...] = SAM_FRAME_SIZES
    grounding: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.groups) - set(PARAMETER_GROUPS)
        if unknown:
            raise RecipeError(f"stage {self.name}: unknown parameter groups {sorted(unknown)}")
        kinds = set(self.mix) - set(EXAMPLE_KINDS)
        if kinds:
            raise RecipeError(f"stage {self.name}: unknown example kinds {sorted(kinds)}")
        if self.steps < 1 or self.batch < 1 or not self.frames or not self.sizes:
            raise RecipeError(f"stage {self.name} needs steps >= 1, batch >= 1, clip lengths and frame sizes")


@dataclass(frozen=True)
class Recipe:
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def scaled(self, factor: float) -> "Recipe":
        """The same recipe with every stage's step count scaled (quick runs, tests)."""
        return Recipe(tuple(replace(s, steps=max(1, round(s.steps * factor))) for s in self.stages))

    def only(self, names: list[str]) -> "Recipe":
        known = {s.name for s in self.stages}
        missing = [n for n in names if n not in known]
        if missing:
            raise RecipeError(f"unknown stages {missing}; the recipe has {sorted(known)}")
        return Recipe(tuple(s for s in self.stages if s.name in names))


DEFAULT_RECIPE = Recipe((
    Stage("sam", steps=900, batch=4, lr=1e-3, mix={"click": 1.0}, frames=(1,), groups=("sam2",)),
    Stage("track", steps=450, batch=4, lr=3e-4, mix={"click": 1.0}, frames=(2, 3, 4), groups=("sam2",)),
    Stage("answer", steps=400, batch=8, lr=2e-3, mix={"object_answer": 1.0}, frames=(1,),
          groups=("language_model", "vision", "memory_projector"), sizes=LLM_FRAME_SIZES),
    Stage("prompt", steps=800, batch=8, lr=2e-3, mix={"caption": 0.1, "answer": 0.9}, frames=(1, 1, 3),
          groups=("prompt_encoder", "language_model", "vision", "memory_projector"), prompt_encoder_from_sam=True,
          sizes=LLM_FRAME_SIZES),
    Stage("align", steps=1000, batch=4, lr=1e-3, mix={"text": 0.5, "prompted": 0.5}, frames=(1, 1, 3),
          groups=("seg_head", "language_model", "vision", "prompt_encoder", "memory_projector"), sam_lr_scale=0.0,
          sizes=LLM_FRAME_SIZES, grounding=True),
))

# The default recipe with SAM 2 also learning attribute prompts (:mod:`unipixel_ros.training.attributes`)
# and the language stages pulling text seeds towards them. Measured (model card): worse than the
# default on clicks and on text referring at this budget, so not the default.
ATTRIBUTE_SEED_RECIPE = Recipe((
    replace(DEFAULT_RECIPE.stages[0], batch=6, mix={"click": 2.0, "attribute": 1.0}),
    replace(DEFAULT_RECIPE.stages[1], mix={"click": 3.0, "attribute": 1.0}),
    *DEFAULT_RECIPE.stages[2:],
))
RECIPES: dict[str, Recipe] = {"default": DEFAULT_RECIPE, "attribute-seeds": ATTRIBUTE_SEED_RECIPE}


def synthetic_config(tokenizer, sam2_image_size: int = SAM2_IMAGE_SIZE) -> PixelQwen2_5_VLConfig:
    """The synthetic model's configuration; token ids match ``tokenizer``."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS}
    return PixelQwen2_5_VLConfig(
        vision_config={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                       "out_hidden_size": 128, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "tokens_per_second": 2, "window_size": VISION_WINDOW_PIXELS,
                       "fullatt_block_indexes": [1]},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 256,
                     "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "initializer_range": 0.02,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [4, 6, 6],
                                         "rope_theta": ROPE_THETA},
                     "bos_token_id": ids[END_OF_TEXT], "eos_token_id": ids[IM_END], "tie_word_embeddings": True},
        tie_word_embeddings=True,
        image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END],
        ref_token_id=ids[REF_TOKEN], seg_token_id=ids[SEG_TOKEN], mem_token_id=ids[MEM_TOKEN],
        sam2_config=SYNTHETIC_SAM2_CONFIG, sam2_image_size=sam2_image_size, sam2_hidden_tokens=2,
        eos_token_id=ids[IM_END], bos_token_id=ids[END_OF_TEXT])


def _align_prompt_attention(sam2: torch.nn.Module, generator: torch.Generator) -> None:
    """Start the decoder's prompt <-> image attentions comparing positions.

    Point prompts and image tokens carry SAM's random-Fourier positional encoding;
    with query and key sharing one orthonormal projection, attention starts out
    favouring the image near a click (and the click the image near it), which a
    randomly initialised decoder otherwise takes thousands of steps to find.
    """
    transformer = sam2.sam_mask_decoder.transformer
    attentions = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    with torch.no_grad():
        for attention in attentions:
            inner, outer = attention.q_proj.weight.shape
            basis, _ = torch.linalg.qr(torch.randn(outer, inner, generator=generator))
            for projection in (attention.q_proj, attention.k_proj):
                projection.weight.copy_(basis.T)
                projection.bias.zero_()


def build_untrained_model(seed: int) -> tuple[PixelQwen2_5_VLForConditionalGeneration, object]:
    """The synthetic model with fresh weights (SAM 2 with its own initialisation) and its processor.

    The token embeddings start at ``TOKEN_EMBEDDING_STD`` rather than the language model's
    0.02 (see there).
    """
    from unipixel_ros.model.sam2_source import build_sam2_model
    from unipixel_ros.model.config import resolve_sam2_config

    processor = build_synthetic_processor()
    config = synthetic_config(processor.tokenizer)
    torch.manual_seed(seed)
    model = PixelQwen2_5_VLForConditionalGeneration(config)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(TOKEN_EMBEDDING_STD / config.text_config.initializer_range)
    # The language-model initialisation also reset SAM 2's layers; SAM 2 trains from its own,
    # drawn from the seed alone (not after the language model's draws, which depend on its size).
    sam2_file, overrides = resolve_sam2_config(config.sam2_config)
    torch.manual_seed(seed)
    fresh = build_sam2_model(sam2_file, config.sam2_image_size, overrides)
    _align_prompt_attention(fresh, torch.Generator().manual_seed(seed))
    model.sam2.load_state_dict(fresh.state_dict())
    return model.eval(), processor
