"""Qwen2.5-VL's ChatML prompt with UniPixel's media convention, and turning it into model inputs.

UniPixel always receives its media as one video placed before the user's text (a
single image is a two-frame video), under Qwen2.5-VL's default system prompt. The
text is written here rather than by a tokenizer's chat template so that every
tokenizer (including the tiny test one) yields the same prompt.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from transformers import Qwen2_5_VLProcessor

from unipixel_ros.model.inputs import ModelInputError, ReferenceInput, UniPixelInputs

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_PAD = "<|video_pad|>"
IMAGE_PAD = "<|image_pad|>"
VISION_PAD = "<|vision_pad|>"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
VIDEO_PLACEHOLDER = f"{VISION_START}{VIDEO_PAD}{VISION_END}"
# Frames per second the published model was given its videos at.
VIDEO_FPS = 2.0


def chat_text(user_text: str, response: str | None = None, response_prefix: str = "",
              system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """One exchange about one video.

    Without ``response`` the text ends with the assistant's opening (plus
    ``response_prefix``), ready for generation; with it, the assistant turn is closed,
    as for a single scoring pass over a known answer.
    """
    text = (f"{IM_START}system\n{system_prompt}{IM_END}\n"
            f"{IM_START}user\n{VIDEO_PLACEHOLDER}{user_text}{IM_END}\n"
            f"{IM_START}assistant\n")
    if response is None:
        return text + response_prefix
    return text + response_prefix + response + f"{IM_END}\n"


def encode_request(processor: Qwen2_5_VLProcessor, text: str, frames: Sequence[np.ndarray] | np.ndarray,
                   references: Sequence[ReferenceInput] = (), region_masks: torch.Tensor | None = None,
                   fps: float = VIDEO_FPS) -> UniPixelInputs:
    """Tokenise a chat text and patchify its video (frames already sized for the model, RGB uint8
    [H, W, 3], an even count) into model inputs. The processor does not resize."""
    video = np.stack([np.asarray(f) for f in frames]) if not isinstance(frames, np.ndarray) else frames
    if len(video) % 2:
        raise ModelInputError(f"the video needs an even number of frames (pad a single image to two), got {len(video)}")
    metadata = [{"total_num_frames": len(video), "fps": fps}]
    batch = processor(text=[text], videos=[video], video_metadata=metadata, do_resize=False,
                      cap_pixels_per_frame=False, return_tensors="pt")
    return UniPixelInputs.from_processor(batch, references=references, region_masks=region_masks)


def decode_response(processor: Qwen2_5_VLProcessor, token_ids: Sequence[int]) -> str:
    """Generated token ids -> answer text, special tokens (``<|seg|>``) kept."""
    return processor.tokenizer.decode(list(token_ids), skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)
