"""Export ``MaskDecoderGraph`` to an ONNX file that onnxruntime and TensorRT both accept.

Graph interface (names are the ``DecoderInputs`` / ``DecoderOutputs`` field names):
  image_embed [K, C, H, W], feat_s0 [1, C0, 4H, 4W], feat_s1 [1, C1, 2H, 2W],
  sparse [K, P, C]  ->  masks [K, 1, 4H, 4W], iou [K, 1], tokens [K, C], object_score [K, 1]
K (objects) and P (prompt tokens) are dynamic, everything else is fixed by the model.

Why a generic ``sparse`` input rather than the bare ``<SEG>`` tokens: one graph then
serves the seed frame (padding rows + the two ``<SEG>`` tokens, P = 4), every tracked
frame (padding rows only, P = 2) and click prompts, with no boolean "has seg tokens"
input and no second engine. The padding rows are a learned constant that
``graph.seed_prompt`` prepends in torch for free; the ``<SEG>`` tokens enter the graph
unchanged as rows 2..3 of ``sparse``.

The file carries its own description in ONNX metadata (``DECODER_METADATA_KEY``):
shapes, precision, and a fingerprint of the decoder weights, so a runtime can refuse
a file exported from other weights than the model it serves.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs
from unipixel_ros.decoders.graph import DecoderShapes, MaskDecoderGraph
from unipixel_ros.decoders.onnx_checks import MIN_OPSET, check_tensorrt_compatible
from unipixel_ros.decoders.sam2_module import sam2_of

INPUT_NAMES = tuple(f.name for f in dataclasses.fields(DecoderInputs))
OUTPUT_NAMES = tuple(f.name for f in dataclasses.fields(DecoderOutputs))
DECODER_METADATA_KEY = "unipixel_ros.mask_decoder"
DEFAULT_OPSET = 18
PRECISIONS = ("fp32", "fp16")
OBJECTS_AXIS = "objects"
PROMPT_AXIS = "prompt_tokens"


class OnnxDecoderError(ValueError):
    """An ONNX file that is not a mask decoder exported by this module."""


@dataclass(frozen=True)
class OnnxDecoderInfo:
    """What an exported decoder file holds, stored inside the file as JSON metadata."""

    shapes: DecoderShapes
    precision: str  # compute precision inside the graph; inputs and outputs are always fp32
    opset: int
    weights_fingerprint: str  # sha256 of the decoder weights it was exported from

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "OnnxDecoderInfo":
        data = json.loads(text)
        return cls(shapes=DecoderShapes(**data.pop("shapes")), **data)


def weights_fingerprint(sam2: nn.Module) -> str:
    """sha256 over the names and fp32 values of every tensor the decoder graph reads."""
    digest = hashlib.sha256()
    graph = MaskDecoderGraph(sam2)
    for name, tensor in sorted(graph.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _HalfPrecisionGraph(nn.Module):
    """fp16 compute with fp32 inputs and outputs (so TensorRT's strong typing builds fp16
    kernels while callers keep one I/O contract); the positional encoding stays fp32."""

    def __init__(self, graph: MaskDecoderGraph):
        super().__init__()
        self.decoder_graph = copy.deepcopy(graph).half()
        self.decoder_graph.prompt_encoder.pe_layer.float()

    def forward(self, image_embed: torch.Tensor, feat_s0: torch.Tensor, feat_s1: torch.Tensor,
                sparse: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.decoder_graph(image_embed.half(), feat_s0.half(), feat_s1.half(), sparse.half())
        return tuple(y.float() for y in outputs)


def example_inputs(shapes: DecoderShapes, num_objects: int = 2, prompt_tokens: int = 4) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes (tracing, benchmarks, engine checks)."""
    h, c = shapes.embed_size, shapes.embed_dim
    return (torch.randn(num_objects, c, h, h),
            torch.randn(1, shapes.s0_channels, shapes.s0_size, shapes.s0_size),
            torch.randn(1, shapes.s1_channels, shapes.s1_size, shapes.s1_size),
            torch.randn(num_objects, prompt_tokens, c))


def export_decoder_onnx(model: nn.Module, path: str | Path, precision: str = "fp32",
                        opset: int = DEFAULT_OPSET) -> OnnxDecoderInfo:
    """Export the mask decoder of ``model`` (a SAM2Base, or a UniPixel model holding one as
    ``.sam2``) to ``path`` as one self-contained file.

    The result passes ``onnx.checker`` (full check) and ``check_tensorrt_compatible``;
    either failing raises and leaves no file behind.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    sam2 = sam2_of(model)
    # Trace a CPU fp32 copy: the running model may live on a GPU or in bf16.
    graph = copy.deepcopy(MaskDecoderGraph(sam2)).float().cpu().eval()
    module: nn.Module = graph if precision == "fp32" else _HalfPrecisionGraph(graph).eval()
    info = OnnxDecoderInfo(shapes=graph.shapes, precision=precision, opset=opset,
                           weights_fingerprint=weights_fingerprint(sam2))

    objects = torch.export.Dim(OBJECTS_AXIS, min=1, max=1024)
    prompt = torch.export.Dim(PROMPT_AXIS, min=1, max=64)
    dynamic = ({0: objects}, None, None, {0: objects, 1: prompt})  # in INPUT_NAMES order
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Both inputs share the objects axis on purpose; the exporter says so as a warning.
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        program = torch.onnx.export(module, example_inputs(graph.shapes), dynamo=True, opset_version=opset,
                                    input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                    dynamic_shapes=dynamic, external_data=False, verbose=False)
    model = program.model_proto
    model.graph.name = "unipixel_sam2_mask_decoder"
    onnx.helper.set_model_props(model, {DECODER_METADATA_KEY: info.to_json()})
    onnx.checker.check_model(model, full_check=True)
    check_tensorrt_compatible(model)
    onnx.save(model, str(path))
    return info


def read_decoder_info(path: str | Path) -> OnnxDecoderInfo:
    """The metadata ``export_decoder_onnx`` stored in ``path`` (weights are not loaded)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxDecoderError(f"no ONNX file at {path}")
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if DECODER_METADATA_KEY not in props:
        raise OnnxDecoderError(f"{path} has no '{DECODER_METADATA_KEY}' metadata: "
                               "not a mask decoder exported by unipixel_ros")
    return OnnxDecoderInfo.from_json(props[DECODER_METADATA_KEY])
