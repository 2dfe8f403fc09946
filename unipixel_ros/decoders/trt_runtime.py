"""Finding TensorRT and the GPU, with messages a user can act on instead of import errors."""
from __future__ import annotations

from types import ModuleType

import torch

from unipixel_ros.decoders.engine_metadata import RuntimeIdentity


class BackendUnavailable(RuntimeError):
    """The requested decoder backend cannot run in this environment (package or GPU missing)."""


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailable(
            f"the 'tensorrt' Python package is not importable ({e}); install the TensorRT wheel "
            "matching your CUDA (pip install tensorrt) or use the torch or onnxruntime backend") from e
    return tensorrt


def tensorrt_major(trt: ModuleType) -> int:
    return int(str(trt.__version__).split(".")[0])


def current_runtime(trt: ModuleType, device: torch.device | None = None) -> RuntimeIdentity:
    """The TensorRT version and GPU an engine would run on now."""
    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False); "
                                 "TensorRT engines need one")
    index = torch.device(device if device is not None else "cuda").index
    index = torch.cuda.current_device() if index is None else index
    major, minor = torch.cuda.get_device_capability(index)
    return RuntimeIdentity(tensorrt_version=str(trt.__version__), gpu_name=torch.cuda.get_device_name(index),
                           compute_capability=f"{major}.{minor}")
