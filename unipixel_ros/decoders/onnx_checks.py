"""Static checks that an ONNX graph will get through TensorRT's ONNX parser.

A failed TensorRT build happens on the robot, minutes into the build and far from
the export; these checks run at export time and name the node that would fail.
The op lists follow the onnx-tensorrt operator support matrix (TensorRT 10.x/11.x).
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

MIN_OPSET = 17  # LayerNormalization is a single op from opset 17 on

# Ops the TensorRT ONNX parser has no importer for.
TENSORRT_UNSUPPORTED_OPS = frozenset({
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor",
    "CenterCropPad", "Col2Im", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
    "DynamicQuantizeLinear", "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool",
    "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement",
    "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch", "SequenceAt",
    "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer",
    "StringSplit", "TfIdfVectorizer", "Unique",
})

# Ops TensorRT parses only in forms exporters rarely produce, so they fail in practice:
# OneHot needs a build-time-constant depth (``repeat_interleave`` exports it from a
# runtime shape, and TensorRT 8.x has no OneHot at all); NonZero has a data-dependent
# output shape, which defeats optimisation profiles.
TENSORRT_FRAGILE_OPS = {
    "OneHot": "depth must be a build-time constant; repeat_interleave-style index arithmetic",
    "NonZero": "its output shape depends on the data",
}


class TensorRTIncompatibleGraph(ValueError):
    """An ONNX graph that TensorRT's parser or builder is known to reject."""


@dataclass(frozen=True)
class Finding:
    """One reason a graph would fail in TensorRT, tied to the node (or input) at fault."""

    op: str
    node: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op} node '{self.node}': {self.reason}"


def _constant_names(model: onnx.ModelProto) -> set[str]:
    names = {init.name for init in model.graph.initializer}
    names.update(out for node in model.graph.node if node.op_type == "Constant" for out in node.output)
    return names


def _all_nodes(graph: onnx.GraphProto):
    """Every node, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)


def tensorrt_findings(model: onnx.ModelProto) -> list[Finding]:
    """All reasons ``model`` would fail in TensorRT (empty when it looks buildable)."""
    findings: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        findings.append(Finding("opset", "<model>", f"opset {opset} < {MIN_OPSET}"))
    for value in model.graph.input:
        if value.type.tensor_type.elem_type == onnx.TensorProto.BOOL:
            findings.append(Finding("input", value.name, "boolean graph inputs are not accepted; "
                                                         "pass a float or int tensor"))
    constants = _constant_names(model)
    for node in _all_nodes(model.graph):
        name = node.name or "<unnamed>"
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding(node.op_type, name, f"custom domain '{node.domain}' needs a plugin"))
        elif node.op_type in TENSORRT_UNSUPPORTED_OPS:
            findings.append(Finding(node.op_type, name, "no TensorRT ONNX importer for this op"))
        elif node.op_type in TENSORRT_FRAGILE_OPS:
            findings.append(Finding(node.op_type, name, TENSORRT_FRAGILE_OPS[node.op_type]))
        elif node.op_type == "Tile" and len(node.input) > 1 and node.input[1] not in constants:
            findings.append(Finding("Tile", name, "repeats computed at run time "
                                                  "(what repeat_interleave exports); use Expand"))
        elif node.op_type == "Resize" and any(a.name == "antialias" and a.i for a in node.attribute):
            findings.append(Finding("Resize", name, "antialiased resize is not supported"))
    return findings


def check_tensorrt_compatible(model: onnx.ModelProto) -> None:
    """Raise ``TensorRTIncompatibleGraph`` listing every finding (op and node name)."""
    findings = tensorrt_findings(model)
    if findings:
        lines = "\n  ".join(str(f) for f in findings)
        raise TensorRTIncompatibleGraph(f"graph '{model.graph.name}' would fail in TensorRT:\n  {lines}")
