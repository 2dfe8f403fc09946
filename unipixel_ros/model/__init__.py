"""UniPixel in PyTorch (Qwen2.5-VL + SAM 2.1 + visual prompts + memory), with no ROS imports.

Typical use::

    model, processor = load_unipixel("PolyU-ChenLab/UniPixel-3B", device="cuda", dtype="bf16")
    inputs = encode_request(processor, chat_text(question), frames, references=refs)
    out = model.generate_greedy(inputs)
    answer = decode_response(processor, out.token_ids)   # out.seg_tokens -> SAM 2
"""
from unipixel_ros.model.chat import chat_text, decode_response, encode_request
from unipixel_ros.model.config import MODEL_TYPE, PixelQwen2_5_VLConfig
from unipixel_ros.model.inputs import ModelInputError, ReferenceInput, UniPixelInputs
from unipixel_ros.model.loader import CheckpointError, load_unipixel
from unipixel_ros.model.modeling import GreedyOutput, PixelQwen2_5_VLForConditionalGeneration
from unipixel_ros.model.tiny import build_tiny_unipixel

__all__ = [
    "MODEL_TYPE", "CheckpointError", "GreedyOutput", "ModelInputError", "PixelQwen2_5_VLConfig",
    "PixelQwen2_5_VLForConditionalGeneration", "ReferenceInput", "UniPixelInputs", "build_tiny_unipixel",
    "chat_text", "decode_response", "encode_request", "load_unipixel",
]
