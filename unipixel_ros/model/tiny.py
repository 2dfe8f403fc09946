"""A tiny random UniPixel with its own tokenizer and processor, built offline.

Same classes and code paths as the published model, a few hundred thousand
parameters: for tests and offline demos. The tokenizer is byte-level (any text
round-trips) with Qwen2.5-VL's chat and vision tokens and UniPixel's three tokens.
"""
from __future__ import annotations

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

from unipixel_ros.model.chat import (END_OF_TEXT, IM_END, IM_START, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_PAD,
                                     VISION_START)
from unipixel_ros.model.config import TINY_SAM2_CONFIG, PixelQwen2_5_VLConfig
from unipixel_ros.model.modeling import PixelQwen2_5_VLForConditionalGeneration
from unipixel_ros.prompts import MEM_TOKEN, REF_TOKEN, SEG_TOKEN

# Special tokens in Qwen2.5-VL's order, then UniPixel's.
TINY_SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, VISION_START, VISION_END, VISION_PAD, IMAGE_PAD,
                       VIDEO_PAD, REF_TOKEN, SEG_TOKEN, MEM_TOKEN)
TINY_SAM2_IMAGE_SIZE = 256
# Frames of this size make a 4 x 4 patch grid: 2 x 2 merged tokens per frame pair.
TINY_FRAME_SIZE = 56


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: 256 byte tokens (no merges) plus the special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=IM_END, pad_token=END_OF_TEXT)


def build_tiny_processor() -> Qwen2_5_VLProcessor:
    """Qwen2.5-VL's processor around the tiny tokenizer (standard patch, merge and temporal sizes)."""
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=build_tiny_tokenizer(),
                               video_processor=Qwen2VLVideoProcessor())


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> PixelQwen2_5_VLConfig:
    """A two-layer UniPixel configuration whose token ids match ``tokenizer``."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS}
    return PixelQwen2_5_VLConfig(
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "tokens_per_second": 2, "window_size": 112,
                       "fullatt_block_indexes": [1]},
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "initializer_range": 0.3,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
                     "bos_token_id": ids[END_OF_TEXT], "eos_token_id": ids[IM_END], "tie_word_embeddings": True},
        tie_word_embeddings=True,
        image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END],
        ref_token_id=ids[REF_TOKEN], seg_token_id=ids[SEG_TOKEN], mem_token_id=ids[MEM_TOKEN],
        sam2_config=TINY_SAM2_CONFIG, sam2_image_size=TINY_SAM2_IMAGE_SIZE, sam2_hidden_tokens=2,
        eos_token_id=ids[IM_END], bos_token_id=ids[END_OF_TEXT])


def build_tiny_unipixel(seed: int = 0) -> tuple[PixelQwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor]:
    """A random tiny UniPixel in eval mode (float32, CPU) and its processor; ``seed`` fixes the weights."""
    processor = build_tiny_processor()
    config = tiny_config(processor.tokenizer)
    torch.manual_seed(seed)
    model = PixelQwen2_5_VLForConditionalGeneration(config)
    model.requires_grad_(False)
    # Random norm scales instead of all ones: a trained model's final norm is not the
    # identity, and the seg head's own RMSNorm would otherwise hide pre- vs post-norm.
    for name, parameter in model.named_parameters():
        if parameter.dim() == 1 and "norm" in name and name.endswith("weight"):
            parameter.uniform_(0.5, 1.5)
    return model.eval(), processor
