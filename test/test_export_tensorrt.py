"""TensorRT engine build: precision rules for TensorRT 10 vs 11, and a real build where possible."""
import importlib.util
import sys
import types

import pytest
import torch

from export import build_engine as build_engine_cli
from unipixel_ros.decoders.trt_build import EngineBuildError, ProfileSpec, _network_and_flags

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAVE_GPU = torch.cuda.is_available()
SKIP_REASON = ("real TensorRT build needs the 'tensorrt' package and a CUDA GPU "
               f"(tensorrt importable: {HAVE_TENSORRT}, CUDA available: {HAVE_GPU})")


def fake_trt(version: str, weak_typing: bool):
    flags = {"TF32": "TF32"} | ({"FP16": "FP16"} if weak_typing else {})
    return types.SimpleNamespace(__version__=version, BuilderFlag=types.SimpleNamespace(**flags))


def test_tensorrt10_builds_fp16_from_fp32_graph_with_builder_flag():
    trt = fake_trt("10.3.0", weak_typing=True)
    assert _network_and_flags(trt, graph_precision="fp32", precision="fp16") == (False, ["FP16"])


def test_tensorrt11_takes_fp16_from_the_graph_only():
    trt = fake_trt("11.0.0", weak_typing=False)
    assert _network_and_flags(trt, graph_precision="fp16", precision="fp16") == (True, [])
    with pytest.raises(EngineBuildError, match="export the decoder with --precision fp16"):
        _network_and_flags(trt, graph_precision="fp32", precision="fp16")


def test_fp32_is_strongly_typed_and_fp16_graph_cannot_build_fp32():
    for trt in (fake_trt("10.3.0", True), fake_trt("11.0.0", False)):
        assert _network_and_flags(trt, "fp32", "fp32") == (True, [])
        with pytest.raises(EngineBuildError, match="needs an fp32 export"):
            _network_and_flags(trt, "fp16", "fp32")


def test_profile_ranges_are_validated():
    assert ProfileSpec((1, 4, 16), (2, 4, 8)).as_dict() == {"objects": [1, 4, 16], "prompt_tokens": [2, 4, 8]}
    with pytest.raises(EngineBuildError, match="objects must satisfy"):
        ProfileSpec(objects=(4, 2, 8))
    with pytest.raises(EngineBuildError, match="prompt_tokens must satisfy"):
        ProfileSpec(prompt_tokens=(0, 2, 4))


def test_build_cli_without_tensorrt_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code = build_engine_cli.main(["--onnx", str(tmp_path / "d.onnx"), "--engine", str(tmp_path / "d.engine")])
    assert code == 2
    assert "'tensorrt' Python package is not importable" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not (HAVE_TENSORRT and HAVE_GPU), reason=SKIP_REASON)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_build_and_parity(tmp_path, precision):
    from unipixel_ros.decoders.engine_metadata import EngineMetadata, metadata_path
    from unipixel_ros.decoders.factory import ArtifactPaths, create_decoder_backend
    from unipixel_ros.decoders.onnx_export import file_sha256
    from unipixel_ros.decoders.parity import TOLERANCES, random_inputs, run_parity
    from unipixel_ros.model.sam2_source import tiny_sam2
    from unipixel_ros.decoders.torch_backend import TorchMaskDecoder

    sam2 = tiny_sam2(256).cuda()
    paths = ArtifactPaths.in_directory(tmp_path, precision)
    choice = create_decoder_backend("tensorrt", sam2, paths, precision=precision, rebuild=True, log=print)
    assert choice.fallback_reason is None, choice.fallback_reason
    meta = EngineMetadata.read(metadata_path(paths.engine))
    assert meta.precision == precision and meta.onnx_sha256 == file_sha256(paths.onnx)
    assert meta.runtime.gpu_name == torch.cuda.get_device_name()
    reference = TorchMaskDecoder(sam2)
    for k in (1, 8, 20):  # 20 > the default profile's 16: decoded in chunks
        for seed in range(2):
            report = run_parity(reference, choice.backend, random_inputs(sam2, k, seed, seed_frame=seed == 0))
            print(report.summary())
            assert report.failures(TOLERANCES[precision]) == [], report.summary()
