"""Loading a UniPixel checkpoint (a local folder or a Hugging Face id) for inference.

The model is built with its parameters on the ``meta`` device (no memory, no random
init), then every checkpoint tensor is read once, renamed to this model's naming,
cast and placed on the target device. Loading is strict: a checkpoint that leaves
any parameter unset, or holds a tensor the model does not have, is refused with the
first offending names. Safetensors are read by default; pickled ``.bin`` weights
only when ``allow_pickle=True``.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import GenerationConfig, Qwen2_5_VLProcessor
from transformers.initialization import no_init_weights

from unipixel_ros.model.checkpoint_keys import to_model_key
from unipixel_ros.model.config import MODEL_TYPE, PixelQwen2_5_VLConfig
from unipixel_ros.model.modeling import PixelQwen2_5_VLForConditionalGeneration

DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_FILE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_FILE = "pytorch_model.bin"
# What a hub download fetches besides weights: config, tokenizer, processor, chat template.
_HUB_METADATA_PATTERNS = ("*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken")
_ERROR_NAMES_SHOWN = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into UniPixel as it is; the message says why."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"bf16"``, ``"fp16"``, ``"fp32"`` (or long names, or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise CheckpointError(f"unsupported dtype {dtype}; use bfloat16, float16 or float32")
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise CheckpointError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}") from None


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the meta device; buffers and plain tensors stay real.

    Buffers (rotary frequencies, SAM 2's positional tables) are computed in module
    constructors and are small, so they are built for real and never need re-deriving.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None:
            created = module._parameters[name]
            module._parameters[name] = nn.Parameter(created.to("meta"), requires_grad=created.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def build_empty_model(config: PixelQwen2_5_VLConfig) -> PixelQwen2_5_VLForConditionalGeneration:
    """The full model with parameters on ``meta``: its names and shapes, without memory."""
    with _parameters_on_meta(), no_init_weights():
        return PixelQwen2_5_VLForConditionalGeneration(config)


def expected_checkpoint_keys(model: PixelQwen2_5_VLForConditionalGeneration) -> set[str]:
    """Model names a checkpoint must provide: every parameter and persistent buffer, less tied copies."""
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    return set(model.state_dict(keep_vars=True)) - tied


def resolve_checkpoint_dir(model_id_or_path: str | Path, allow_pickle: bool = False) -> Path:
    """A local folder as is; anything else is a Hugging Face model id, downloaded (or taken from the cache)."""
    path = Path(model_id_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; give the checkpoint folder (with config.json and the weights)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    weights = ["*.safetensors", "*.safetensors.index.json"] + (["*.bin", "*.bin.index.json"] if allow_pickle else [])
    try:
        return Path(snapshot_download(str(model_id_or_path), allow_patterns=[*_HUB_METADATA_PATTERNS, *weights]))
    except HFValidationError as error:
        raise CheckpointError(f"{model_id_or_path!r} is neither a folder nor a valid Hugging Face model id") from error
    except Exception as error:  # network, authentication, offline mode, unknown repository
        raise CheckpointError(f"cannot fetch {model_id_or_path!r} from the Hugging Face hub "
                              f"({type(error).__name__}: {error})") from error


def load_config(checkpoint_dir: Path) -> PixelQwen2_5_VLConfig:
    """The checkpoint's config, refused unless its ``model_type`` is ``pixel_qwen2_5_vl``."""
    config_file = checkpoint_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{checkpoint_dir} has no config.json")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != MODEL_TYPE:
        raise CheckpointError(f"{checkpoint_dir} holds a {model_type!r} model, not a UniPixel "
                              f"({MODEL_TYPE!r}) checkpoint")
    return PixelQwen2_5_VLConfig.from_pretrained(str(checkpoint_dir))


def weight_files(checkpoint_dir: Path, allow_pickle: bool = False) -> list[Path]:
    """The weight files of a checkpoint: safetensors (sharded or single), else pickles if allowed."""
    for index_name, single_name, pickled in ((SAFETENSORS_INDEX, SAFETENSORS_FILE, False),
                                             (PICKLE_INDEX, PICKLE_FILE, True)):
        index = checkpoint_dir / index_name
        single = checkpoint_dir / single_name
        if not index.is_file() and not single.is_file():
            continue
        if pickled and not allow_pickle:
            raise CheckpointError(f"{checkpoint_dir} has only pickled weights ({single_name}); pickles can run code "
                                  "when loaded, so they are refused unless allow_pickle=True")
        if not index.is_file():
            return [single]
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        absent = [name for name in shards if not (checkpoint_dir / name).is_file()]
        if absent:
            raise CheckpointError(f"{checkpoint_dir} is missing {len(absent)} weight shard(s) listed in "
                                  f"{index_name}, e.g. {absent[0]}")
        return [checkpoint_dir / name for name in shards]
    raise CheckpointError(f"{checkpoint_dir} has no weights ({SAFETENSORS_FILE} or {SAFETENSORS_INDEX})")


def _read_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as shard:
                for key in shard.keys():
                    yield key, shard.get_tensor(key)
        else:
            yield from torch.load(file, map_location="cpu", weights_only=True, mmap=True).items()


def _count_tensors(files: list[Path]) -> int | None:
    if not all(f.suffix == ".safetensors" for f in files):
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as shard:
            total += len(shard.keys())
    return total


def _names(keys: set[str]) -> str:
    shown = sorted(keys)[:_ERROR_NAMES_SHOWN]
    more = f" (and {len(keys) - len(shown)} more)" if len(keys) > len(shown) else ""
    return ", ".join(shown) + more


def load_weights(model: PixelQwen2_5_VLForConditionalGeneration, files: list[Path], device: torch.device,
                 dtype: torch.dtype, progress: bool = True) -> None:
    """Fill a model built by :func:`build_empty_model` from weight files; strict on names and shapes."""
    targets = dict(model.state_dict(keep_vars=True))
    expected = expected_checkpoint_keys(model)
    loaded: set[str] = set()
    unexpected: set[str] = set()
    bar = tqdm(total=_count_tensors(files), desc="Loading UniPixel weights", unit="tensor", disable=not progress)
    with bar:
        for checkpoint_key, tensor in _read_tensors(files):
            bar.update()
            key = to_model_key(checkpoint_key)
            if key not in expected:
                unexpected.add(checkpoint_key)
                continue
            target = targets[key]
            if tuple(tensor.shape) != tuple(target.shape):
                raise CheckpointError(f"checkpoint tensor {checkpoint_key} has shape {tuple(tensor.shape)}, "
                                      f"the model expects {tuple(target.shape)} for {key}")
            if key in loaded:
                raise CheckpointError(f"checkpoint holds {key} twice (second time as {checkpoint_key})")
            # Always a fresh allocation: tensors read from a file can sit at unaligned addresses,
            # which slows CPU kernels and makes them round differently from the saved model.
            value = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype, copy=True)
            _assign(model, key, value)
            loaded.add(key)
    missing = expected - loaded
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} model parameter(s) missing from the checkpoint: {_names(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} checkpoint tensor(s) the model does not have: {_names(unexpected)}")
        raise CheckpointError("checkpoint does not match the UniPixel model: " + "; ".join(problems))
    model.tie_weights()


def _assign(model: nn.Module, key: str, value: torch.Tensor) -> None:
    """Replace a (meta) parameter or buffer by a loaded tensor, keeping its kind."""
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    if name in module._parameters:
        value = nn.Parameter(value, requires_grad=False)
    setattr(module, name, value)


def load_processor(checkpoint_dir: Path) -> Qwen2_5_VLProcessor:
    """The checkpoint's Qwen2.5-VL processor (tokenizer with UniPixel's tokens, image and video processors)."""
    try:
        return Qwen2_5_VLProcessor.from_pretrained(str(checkpoint_dir))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the processor / tokenizer from {checkpoint_dir}: {error}") from error


def load_unipixel(model_id_or_path: str | Path, device: str | torch.device = "cpu",
                  dtype: str | torch.dtype = "bf16", allow_pickle: bool = False,
                  progress: bool = True) -> tuple[PixelQwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor]:
    """Load a UniPixel checkpoint for inference: ``(model in eval mode, processor)``.

    ``model_id_or_path`` is a local checkpoint folder or a Hugging Face id such as
    ``PolyU-ChenLab/UniPixel-3B``. Floating-point weights are cast to ``dtype``; the
    model is placed on ``device`` with gradients off.
    """
    torch_dtype = resolve_dtype(dtype)
    device = torch.device(device)
    checkpoint_dir = resolve_checkpoint_dir(model_id_or_path, allow_pickle=allow_pickle)
    config = load_config(checkpoint_dir)
    files = weight_files(checkpoint_dir, allow_pickle=allow_pickle)
    processor = load_processor(checkpoint_dir)
    model = build_empty_model(config)
    load_weights(model, files, device, torch_dtype, progress=progress)
    if (checkpoint_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(checkpoint_dir))
    model.to(device)
    model.requires_grad_(False)
    model.eval()
    return model, processor
