"""ONNX export of the tiny model's mask decoder, through the CLI, run with onnxruntime on CPU."""
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

from export import export_onnx
from unipixel_ros.decoders.onnx_checks import MIN_OPSET, tensorrt_findings
from unipixel_ros.decoders.onnx_export import (INPUT_NAMES, OBJECTS_AXIS, OUTPUT_NAMES, PROMPT_AXIS,
                                               read_decoder_info, weights_fingerprint)
from unipixel_ros.decoders.ort_backend import OnnxRuntimeMaskDecoder
from unipixel_ros.decoders.parity import TOLERANCES, random_inputs, run_parity
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder
from unipixel_ros.model.sam2_source import tiny_sam2

IMAGE_SIZE = 128
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sam2():
    torch.set_num_threads(1)
    return tiny_sam2(IMAGE_SIZE, seed=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """The tiny model's decoder exported by the CLI at both precisions (same seed as ``sam2``)."""
    out = tmp_path_factory.mktemp("onnx")
    paths = {}
    for precision in ("fp32", "fp16"):
        paths[precision] = out / f"decoder_{precision}.onnx"
        assert export_onnx.main(["--tiny", "--image-size", str(IMAGE_SIZE), "--seed", "0",
                                 "--precision", precision, "--output", str(paths[precision])]) == 0
    return paths


def dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_cli_help_runs():
    for module in ("export.export_onnx", "export.build_engine", "export.parity"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_graph_is_valid_and_tensorrt_friendly(exported):
    model = onnx.load(str(exported["fp32"]))
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= MIN_OPSET
    assert tensorrt_findings(model) == []
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"OneHot", "Tile", "NonZero", "Loop", "If", "Resize"}
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)


def test_interface_has_dynamic_objects_and_prompt_length(exported):
    model = onnx.load(str(exported["fp32"]))
    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    assert tuple(inputs) == INPUT_NAMES and tuple(outputs) == OUTPUT_NAMES
    h = IMAGE_SIZE // 16
    assert inputs == {"image_embed": [OBJECTS_AXIS, 256, h, h], "feat_s0": [1, 32, 4 * h, 4 * h],
                      "feat_s1": [1, 64, 2 * h, 2 * h], "sparse": [OBJECTS_AXIS, PROMPT_AXIS, 256]}
    assert outputs == {"masks": [OBJECTS_AXIS, 1, 4 * h, 4 * h], "iou": [OBJECTS_AXIS, 1],
                       "tokens": [OBJECTS_AXIS, 256], "object_score": [OBJECTS_AXIS, 1]}


def test_metadata_names_precision_shapes_and_weights(exported, sam2):
    for precision, path in exported.items():
        info = read_decoder_info(path)
        assert info.precision == precision
        assert info.shapes.image_size == IMAGE_SIZE and info.shapes.mask_size == IMAGE_SIZE // 4
        assert info.weights_fingerprint == weights_fingerprint(sam2)


@pytest.mark.parametrize("num_objects", [1, 3, 8])
def test_onnxruntime_matches_torch_fp32(exported, sam2, num_objects):
    torch_backend, ort_backend = TorchMaskDecoder(sam2), OnnxRuntimeMaskDecoder(exported["fp32"])
    tol = TOLERANCES["fp32"]
    for seed in range(3):  # even seeds: seed frame (padding + <SEG>), odd: tracked frame (padding)
        inputs = random_inputs(sam2, num_objects, seed, seed_frame=seed % 2 == 0)
        report = run_parity(torch_backend, ort_backend, inputs)
        assert report.mask_iou == [1.0] * num_objects, report.summary()
        assert report.max_logit_diff <= tol.max_logit_diff, report.summary()
        assert report.max_iou_score_diff <= tol.max_iou_score_diff, report.summary()
        assert report.failures(tol) == []


def test_masks_are_not_trivial(sam2):
    """The parity above compares real masks: objects present, both signs of logit common."""
    out = TorchMaskDecoder(sam2)(random_inputs(sam2, 8, seed=0, seed_frame=True))
    assert (out.object_score > 0).all()
    positive = (out.masks > 0).float().mean(dim=(1, 2, 3))
    assert ((positive > 0.1) & (positive < 0.9)).all()


@pytest.mark.parametrize("num_objects", [3, 8])
def test_onnxruntime_fp16_graph_within_fp16_tolerance(exported, sam2, num_objects):
    report = run_parity(TorchMaskDecoder(sam2), OnnxRuntimeMaskDecoder(exported["fp16"]),
                        random_inputs(sam2, num_objects, seed=5, seed_frame=True))
    assert report.failures(TOLERANCES["fp16"]) == [], report.summary()
    assert report.max_logit_diff > 0  # it really computed in fp16


def test_ort_returns_on_caller_device_and_dtypes(exported, sam2):
    inputs = random_inputs(sam2, 2, seed=1, seed_frame=False)
    out = OnnxRuntimeMaskDecoder(exported["fp32"])(inputs)
    assert out.masks.dtype == torch.float32 and out.masks.device == inputs.image_embed.device
    assert out.tokens.shape == (2, 256) and out.iou.shape == (2, 1) and out.object_score.shape == (2, 1)
