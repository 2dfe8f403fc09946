"""The onnxruntime mask decoder backend, running a file written by ``onnx_export``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs
from unipixel_ros.decoders.onnx_export import INPUT_NAMES, OUTPUT_NAMES, read_decoder_info


class OnnxRuntimeMaskDecoder:
    """Runs an exported decoder with onnxruntime.

    Tensors go through host memory (numpy): on CPU this costs nothing; on a GPU the
    TensorRT backend is the one to use. Outputs come back on the inputs' device, as
    float32 masks and the inputs' dtype for the rest, like the torch backend.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, providers: Sequence[str] | None = None,
                 intra_op_threads: int = 0):
        import onnxruntime as ort

        self.info = read_decoder_info(onnx_path)
        self.shapes = self.info.shapes
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(onnx_path), options,
                                            providers=list(providers or ["CPUExecutionProvider"]))

    def __call__(self, inputs: DecoderInputs) -> DecoderOutputs:
        self.shapes.check(inputs)
        tensors = [getattr(inputs, name) for name in INPUT_NAMES]
        feed = {name: t.detach().to("cpu", torch.float32).contiguous().numpy()
                for name, t in zip(INPUT_NAMES, tensors)}
        results = self.session.run(list(OUTPUT_NAMES), feed)
        device, dtype = inputs.image_embed.device, inputs.image_embed.dtype
        out = {name: torch.from_numpy(r).to(device) for name, r in zip(OUTPUT_NAMES, results)}
        return DecoderOutputs(masks=out["masks"].float(), iou=out["iou"].to(dtype),
                              tokens=out["tokens"].to(dtype), object_score=out["object_score"].to(dtype))
