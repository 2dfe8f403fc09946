"""Choosing a mask decoder backend by name, and falling back to torch when it cannot run.

The node and the pipeline call ``create_decoder_backend`` with the backend named in
their configuration. Anything environmental (package missing, no GPU, an engine for
another GPU or TensorRT, artifacts exported from other weights) does not stop the
node: the torch backend takes over and ``DecoderChoice.fallback_reason`` says why.
With ``rebuild=True`` missing or stale artifacts are regenerated from the loaded
model instead (ONNX export, then TensorRT build).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from unipixel_ros.decoders import BACKENDS
from unipixel_ros.decoders.base import MaskDecoderBackend
from unipixel_ros.decoders.sam2_module import sam2_of
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder

LOG = logging.getLogger(__name__)


class UnknownBackend(ValueError):
    """A backend name outside ``BACKENDS`` (a configuration error, never a fallback)."""


@dataclass
class DecoderChoice:
    backend: MaskDecoderBackend
    requested: str
    fallback_reason: str | None = None  # set when ``backend`` is torch instead of ``requested``


@dataclass(frozen=True)
class ArtifactPaths:
    """Where the exported decoder lives: the ONNX file and the TensorRT engine built from it."""

    onnx: Path
    engine: Path

    @classmethod
    def in_directory(cls, directory: str | Path, precision: str) -> "ArtifactPaths":
        directory = Path(directory)
        return cls(onnx=directory / f"mask_decoder_{precision}.onnx",
                   engine=directory / f"mask_decoder_{precision}.engine")


def _onnx_for(sam2: nn.Module, path: Path, precision: str, rebuild: bool, fingerprint: str) -> Path:
    """An ONNX file exported from these weights at this precision, exported now if allowed."""
    from unipixel_ros.decoders.onnx_export import OnnxDecoderError, export_decoder_onnx, read_decoder_info

    try:
        info = read_decoder_info(path)
        problem = None
        if info.weights_fingerprint != fingerprint:
            problem = f"{path} was exported from other decoder weights than the loaded model's"
        elif info.precision != precision:
            problem = f"{path} computes in {info.precision}, {precision} was asked for"
    except OnnxDecoderError as e:
        problem = str(e)
    if problem is None:
        return path
    if not rebuild:
        raise FileNotFoundError(f"{problem} (set rebuild to export it from the loaded model)")
    LOG.info("exporting the mask decoder to %s (%s)", path, problem)
    export_decoder_onnx(sam2, path, precision=precision)
    return path


def _onnxruntime(sam2: nn.Module, paths: ArtifactPaths, precision: str, rebuild: bool) -> MaskDecoderBackend:
    from unipixel_ros.decoders.onnx_export import weights_fingerprint
    from unipixel_ros.decoders.ort_backend import OnnxRuntimeMaskDecoder

    import onnxruntime

    onnx_path = _onnx_for(sam2, paths.onnx, precision, rebuild, weights_fingerprint(sam2))
    providers = ["CPUExecutionProvider"]
    if next(sam2.parameters()).is_cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return OnnxRuntimeMaskDecoder(onnx_path, providers=providers)


def _tensorrt(sam2: nn.Module, paths: ArtifactPaths, precision: str, rebuild: bool,
              log: Callable[[str], None]) -> MaskDecoderBackend:
    from unipixel_ros.decoders.engine_metadata import EngineMetadataError
    from unipixel_ros.decoders.onnx_export import weights_fingerprint
    from unipixel_ros.decoders.trt_backend import EngineMismatch, TensorRTMaskDecoder, check_engine
    from unipixel_ros.decoders.trt_runtime import current_runtime, import_tensorrt

    model_device = next(sam2.parameters()).device
    device = model_device if model_device.type == "cuda" else torch.device("cuda")
    current_runtime(import_tensorrt(), device)  # clear messages for a missing package or GPU
    fingerprint = weights_fingerprint(sam2)
    try:
        check_engine(paths.engine, fingerprint, device)
    except (EngineMismatch, EngineMetadataError) as e:
        if not rebuild:
            raise
        from unipixel_ros.decoders.trt_build import build_engine

        log(f"rebuilding the TensorRT mask decoder engine: {e}")
        onnx_path = _onnx_for(sam2, paths.onnx, precision, True, fingerprint)
        build_engine(onnx_path, paths.engine, precision=precision, log=log)
    return TensorRTMaskDecoder(paths.engine, fingerprint, device)


def create_decoder_backend(kind: str, model: nn.Module, artifacts: ArtifactPaths | None = None,
                           precision: str = "fp32", rebuild: bool = False,
                           log: Callable[[str], None] = LOG.warning) -> DecoderChoice:
    """The ``kind`` backend for the mask decoder of ``model`` (a SAM2Base, or a UniPixel model
    holding one as ``.sam2``), or torch with the reason it could not be.

    ``artifacts`` is needed for onnxruntime and tensorrt; ``precision`` is the
    exported graph's (fp32 or fp16) and, for TensorRT, the engine's.
    """
    if kind not in BACKENDS:
        raise UnknownBackend(f"unknown mask decoder backend {kind!r}; choose one of {BACKENDS}")
    sam2 = sam2_of(model)
    if kind == "torch":
        return DecoderChoice(TorchMaskDecoder(sam2), kind)
    try:
        if artifacts is None:
            raise FileNotFoundError(f"the {kind} backend needs the path of the exported decoder")
        if kind == "onnxruntime":
            backend = _onnxruntime(sam2, artifacts, precision, rebuild)
        else:
            backend = _tensorrt(sam2, artifacts, precision, rebuild, log)
        return DecoderChoice(backend, kind)
    except (ImportError, RuntimeError, OSError, ValueError) as e:
        reason = f"{kind} mask decoder unavailable, using torch: {e}"
        log(reason)
        return DecoderChoice(TorchMaskDecoder(sam2), kind, fallback_reason=reason)
