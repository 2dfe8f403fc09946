"""The TensorRT mask decoder backend: a prebuilt engine run on torch's CUDA stream.

Inputs and outputs stay on the GPU as torch tensors (TensorRT reads and writes them
in place through ``set_tensor_address``), so no host copies happen when the caller's
tensors are on that GPU (others are moved there and the results moved back). More
objects than the engine's profiles allow are decoded in chunks.
"""
from __future__ import annotations

from pathlib import Path

import torch

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs
from unipixel_ros.decoders.engine_metadata import EngineMetadata, metadata_path, runtime_mismatches
from unipixel_ros.decoders.graph import DecoderShapeError
from unipixel_ros.decoders.onnx_export import INPUT_NAMES, OBJECTS_AXIS, OUTPUT_NAMES, PROMPT_AXIS
from unipixel_ros.decoders.trt_runtime import current_runtime, import_tensorrt


class EngineMismatch(ValueError):
    """An engine that must not run here: other TensorRT, other GPU, or other weights."""


def check_engine(engine_path: str | Path, weights_fingerprint: str | None = None,
                 device: torch.device | None = None) -> EngineMetadata:
    """Metadata of a runnable engine, or ``EngineMismatch`` saying why it is not runnable."""
    trt = import_tensorrt()
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineMismatch(f"no TensorRT engine at {engine_path}")
    meta = EngineMetadata.read(metadata_path(engine_path))
    reasons = runtime_mismatches(meta, current_runtime(trt, device))
    if weights_fingerprint is not None and meta.weights_fingerprint != weights_fingerprint:
        reasons.append("built from other decoder weights than the loaded model's")
    if reasons:
        raise EngineMismatch(f"TensorRT engine {engine_path} refused: " + "; ".join(reasons))
    return meta


class TensorRTMaskDecoder:
    name = "tensorrt"

    def __init__(self, engine_path: str | Path, weights_fingerprint: str | None = None,
                 device: torch.device | str = "cuda"):
        trt = import_tensorrt()
        self.device = torch.device(device)
        self.meta = check_engine(engine_path, weights_fingerprint, self.device)
        self.shapes = self.meta.shapes
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self.engine is None:
                raise EngineMismatch(f"TensorRT could not deserialize {engine_path}")
            self.context = self.engine.create_execution_context()
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if hasattr(trt.DataType, "BF16"):
            dtypes[trt.DataType.BF16] = torch.bfloat16
        self._dtypes = {name: dtypes[self.engine.get_tensor_dtype(name)] for name in INPUT_NAMES + OUTPUT_NAMES}
        self._profile = 0

    def _choose_profile(self, k: int, p: int, stream: torch.cuda.Stream) -> None:
        for index, profile in enumerate(self.meta.profiles):
            (k_lo, _, k_hi), (p_lo, _, p_hi) = profile[OBJECTS_AXIS], profile[PROMPT_AXIS]
            if k_lo <= k <= k_hi and p_lo <= p <= p_hi:
                if index != self._profile:
                    self.context.set_optimization_profile_async(index, stream.cuda_stream)
                    self._profile = index
                return
        raise DecoderShapeError(f"no engine profile covers {k} objects with {p} prompt tokens "
                                f"(profiles: {self.meta.profiles})")

    def _run(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        stream = torch.cuda.current_stream(self.device)
        self._choose_profile(tensors["sparse"].shape[0], tensors["sparse"].shape[1], stream)
        bound = {name: t.to(self.device, self._dtypes[name]).contiguous() for name, t in tensors.items()}
        for name, t in bound.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outputs = {}
        for name in OUTPUT_NAMES:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution of the mask decoder failed (see the TensorRT log)")
        return outputs

    def __call__(self, inputs: DecoderInputs) -> DecoderOutputs:
        k = self.shapes.check(inputs)
        step = self.meta.max_objects()
        chunks = []
        for start in range(0, k, step):
            tensors = {name: getattr(inputs, name) for name in INPUT_NAMES}
            tensors["image_embed"] = tensors["image_embed"][start:start + step]
            tensors["sparse"] = tensors["sparse"][start:start + step]
            chunks.append(self._run(tensors))
        out = {name: torch.cat([c[name] for c in chunks]) for name in OUTPUT_NAMES}
        device, dtype = inputs.image_embed.device, inputs.image_embed.dtype
        return DecoderOutputs(masks=out["masks"].to(device, torch.float32), iou=out["iou"].to(device, dtype),
                              tokens=out["tokens"].to(device, dtype),
                              object_score=out["object_score"].to(device, dtype))
