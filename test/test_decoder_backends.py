"""Backend choice: the named backend when it can run, torch with a clear reason when not.

TensorRT is not installable on CPU-only machines, so a stand-in ``tensorrt`` module
(only ``__version__``) and a stand-in GPU identity isolate the metadata and fallback
logic; the real engine build and run are in test_export_tensorrt.py.
"""
import sys
import types
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from unipixel_ros.decoders import trt_backend, trt_build
from unipixel_ros.decoders.engine_metadata import (EngineMetadata, EngineMetadataError, RuntimeIdentity,
                                                   metadata_path, runtime_mismatches)
from unipixel_ros.decoders.factory import ArtifactPaths, UnknownBackend, create_decoder_backend
from unipixel_ros.decoders.graph import DecoderShapes
from unipixel_ros.decoders.onnx_export import (DECODER_METADATA_KEY, OnnxDecoderError, OnnxDecoderInfo,
                                               read_decoder_info, weights_fingerprint)
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder
from unipixel_ros.decoders.trt_backend import EngineMismatch, check_engine
from unipixel_ros.decoders.trt_build import ProfileSpec
from unipixel_ros.model.sam2_source import tiny_sam2

ORIN = RuntimeIdentity(tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")


@pytest.fixture(scope="module")
def sam2():
    torch.set_num_threads(1)
    return tiny_sam2(64)


def write_decoder_onnx_stub(path: Path, sam2, fingerprint: str | None = None, precision: str = "fp32") -> None:
    """An ONNX file carrying decoder metadata (the factory reads only the metadata)."""
    info = OnnxDecoderInfo(shapes=DecoderShapes.from_sam2(sam2), precision=precision, opset=18,
                           weights_fingerprint=fingerprint or weights_fingerprint(sam2))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "stub",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    helper.set_model_props(model, {DECODER_METADATA_KEY: info.to_json()})
    onnx.save(model, str(path))


def write_engine(path: Path, sam2, runtime: RuntimeIdentity, fingerprint: str | None = None) -> EngineMetadata:
    path.write_bytes(b"serialized engine")
    meta = EngineMetadata(runtime=runtime, shapes=DecoderShapes.from_sam2(sam2), precision="fp16",
                          strongly_typed=True, profiles=[ProfileSpec().as_dict()], onnx_sha256="0" * 64,
                          weights_fingerprint=fingerprint or weights_fingerprint(sam2),
                          workspace_bytes=1 << 30, build_seconds=1.0)
    meta.write(metadata_path(path))
    return meta


@pytest.fixture
def fake_gpu_with_tensorrt(monkeypatch):
    """Pretend an Orin with TensorRT 10.3.0 is present."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=ORIN.tensorrt_version))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: ORIN.gpu_name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 7))


def test_torch_backend_and_unknown_name(sam2):
    choice = create_decoder_backend("torch", sam2)
    assert isinstance(choice.backend, TorchMaskDecoder) and choice.fallback_reason is None
    with pytest.raises(UnknownBackend, match="'tensorflow'"):
        create_decoder_backend("tensorflow", sam2)


def test_missing_tensorrt_falls_back_to_torch_with_message(sam2, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
    logged = []
    choice = create_decoder_backend("tensorrt", sam2, ArtifactPaths.in_directory(tmp_path, "fp16"),
                                    log=logged.append)
    assert choice.backend.name == "torch" and choice.requested == "tensorrt"
    assert "'tensorrt' Python package is not importable" in choice.fallback_reason
    assert logged == [choice.fallback_reason]


def test_no_gpu_falls_back_with_message(sam2, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choice = create_decoder_backend("tensorrt", sam2, ArtifactPaths.in_directory(tmp_path, "fp16"), log=print)
    assert choice.backend.name == "torch"
    assert "no CUDA GPU is visible" in choice.fallback_reason


@pytest.mark.parametrize("built, expected", [
    (RuntimeIdentity("10.1.0", "Orin", "8.7"), "built with TensorRT 10.1.0, running TensorRT 10.3.0"),
    (RuntimeIdentity("10.3.0", "NVIDIA A100", "8.0"), "built for compute capability 8.0, this GPU has 8.7"),
    (RuntimeIdentity("10.3.0", "Orin (64GB)", "8.7"), "built on 'Orin (64GB)', running on 'Orin'"),
])
def test_engine_for_other_tensorrt_or_gpu_is_refused_and_torch_used(
        sam2, tmp_path, fake_gpu_with_tensorrt, built, expected):
    paths = ArtifactPaths.in_directory(tmp_path, "fp16")
    write_engine(paths.engine, sam2, built)
    with pytest.raises(EngineMismatch, match="refused: " + expected.replace("(", r"\(").replace(")", r"\)")):
        check_engine(paths.engine, weights_fingerprint(sam2))
    choice = create_decoder_backend("tensorrt", sam2, paths, log=print)
    assert choice.backend.name == "torch"
    assert expected in choice.fallback_reason


def test_engine_from_other_weights_is_refused(sam2, tmp_path, fake_gpu_with_tensorrt):
    paths = ArtifactPaths.in_directory(tmp_path, "fp16")
    write_engine(paths.engine, sam2, ORIN, fingerprint="f" * 64)
    choice = create_decoder_backend("tensorrt", sam2, paths, log=print)
    assert "built from other decoder weights" in choice.fallback_reason


def test_engine_without_metadata_is_refused(sam2, tmp_path, fake_gpu_with_tensorrt):
    paths = ArtifactPaths.in_directory(tmp_path, "fp16")
    paths.engine.write_bytes(b"engine")
    choice = create_decoder_backend("tensorrt", sam2, paths, log=print)
    assert f"no engine metadata at {metadata_path(paths.engine)}" in choice.fallback_reason


def test_rebuild_builds_a_mismatched_engine_and_uses_it(sam2, tmp_path, fake_gpu_with_tensorrt, monkeypatch):
    paths = ArtifactPaths.in_directory(tmp_path, "fp16")
    write_engine(paths.engine, sam2, RuntimeIdentity("8.6.1", "Orin", "8.7"))
    write_decoder_onnx_stub(paths.onnx, sam2, precision="fp16")
    builds = []

    def build_engine(onnx_path, engine_path, precision, log):
        builds.append((Path(onnx_path), Path(engine_path), precision))
        write_engine(Path(engine_path), sam2, ORIN)

    class LoadedEngine:
        name = "tensorrt"

        def __init__(self, engine_path, fingerprint, device):
            self.meta = check_engine(engine_path, fingerprint, device)

    monkeypatch.setattr(trt_build, "build_engine", build_engine)
    monkeypatch.setattr(trt_backend, "TensorRTMaskDecoder", LoadedEngine)
    choice = create_decoder_backend("tensorrt", sam2, paths, precision="fp16", rebuild=True, log=print)
    assert choice.fallback_reason is None and isinstance(choice.backend, LoadedEngine)
    assert builds == [(paths.onnx, paths.engine, "fp16")]
    assert choice.backend.meta.runtime == ORIN


def test_onnxruntime_without_file_falls_back(sam2, tmp_path):
    choice = create_decoder_backend("onnxruntime", sam2, ArtifactPaths.in_directory(tmp_path, "fp32"), log=print)
    assert choice.backend.name == "torch"
    assert "no ONNX file at" in choice.fallback_reason and "rebuild" in choice.fallback_reason


def test_onnx_from_other_weights_is_refused(sam2, tmp_path):
    paths = ArtifactPaths.in_directory(tmp_path, "fp32")
    write_decoder_onnx_stub(paths.onnx, sam2, fingerprint="0" * 64)
    choice = create_decoder_backend("onnxruntime", sam2, paths, log=print)
    assert "exported from other decoder weights" in choice.fallback_reason
    write_decoder_onnx_stub(paths.onnx, sam2, precision="fp16")
    choice = create_decoder_backend("onnxruntime", sam2, paths, log=print)
    assert "computes in fp16, fp32 was asked for" in choice.fallback_reason


def test_onnx_without_decoder_metadata_is_named(tmp_path):
    path = tmp_path / "other.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(OnnxDecoderError, match="not a mask decoder exported by unipixel_ros"):
        read_decoder_info(path)


def test_metadata_round_trip_and_mismatch_list(sam2, tmp_path):
    meta = write_engine(tmp_path / "d.engine", sam2, ORIN)
    assert EngineMetadata.read(metadata_path(tmp_path / "d.engine")) == meta
    assert runtime_mismatches(meta, ORIN) == []
    assert len(runtime_mismatches(meta, RuntimeIdentity("11.0.0", "Thor", "11.0"))) == 3
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EngineMetadataError, match="unreadable engine metadata"):
        EngineMetadata.read(tmp_path / "bad.json")


def test_fingerprint_follows_decoder_weights_only(sam2):
    before = weights_fingerprint(sam2)
    with torch.no_grad():
        sam2.memory_encoder.out_proj.weight.add_(1.0)  # not read by the decoder
        assert weights_fingerprint(sam2) == before
        sam2.sam_mask_decoder.iou_token.weight.add_(1.0)
        try:
            assert weights_fingerprint(sam2) != before
        finally:
            sam2.sam_mask_decoder.iou_token.weight.sub_(1.0)
