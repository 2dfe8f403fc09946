"""Build a TensorRT engine from an exported decoder ONNX file (TensorRT 10 and 11).

Precision, by TensorRT major version:
- the ONNX graph is fp16 (exported with precision="fp16"): a strongly typed network,
  fp16 kernels exactly where the graph says; works on 10 and 11;
- the graph is fp32 and fp16 is asked for: TensorRT 10 lets the builder pick fp16
  kernels (BuilderFlag.FP16, weak typing); TensorRT 11 removed that flag, so the
  build is refused with the export command that fixes it;
- fp32: strongly typed where the flag exists, with TF32 off so fp32 means fp32.
The object count (and prompt length) are dynamic through optimisation profiles.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from unipixel_ros.decoders.engine_metadata import EngineMetadata, metadata_path
from unipixel_ros.decoders.onnx_export import OBJECTS_AXIS, PROMPT_AXIS, file_sha256, read_decoder_info
from unipixel_ros.decoders.trt_runtime import current_runtime, import_tensorrt, tensorrt_major

DEFAULT_WORKSPACE_BYTES = 1 << 30


class EngineBuildError(ValueError):
    """A build request TensorRT cannot satisfy (bad profile, precision, parse failure)."""


@dataclass(frozen=True)
class ProfileSpec:
    """[min, opt, max] of the dynamic axes: the object count K and the prompt length P."""

    objects: tuple[int, int, int] = (1, 4, 16)
    prompt_tokens: tuple[int, int, int] = (2, 4, 8)

    def __post_init__(self):
        for axis, (lo, opt, hi) in ((OBJECTS_AXIS, self.objects), (PROMPT_AXIS, self.prompt_tokens)):
            if not 1 <= lo <= opt <= hi:
                raise EngineBuildError(f"profile {axis} must satisfy 1 <= min <= opt <= max, "
                                       f"got {(lo, opt, hi)}")

    def as_dict(self) -> dict[str, list[int]]:
        return {OBJECTS_AXIS: list(self.objects), PROMPT_AXIS: list(self.prompt_tokens)}


def _progress_monitor(trt, log: Callable[[str], None]):
    """A TensorRT IProgressMonitor that prints build phases, indented by nesting."""

    class PrintProgress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.depth[phase_name] = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            log(f"{'  ' * self.depth[phase_name]}[TensorRT] {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # never cancel

        def phase_finish(self, phase_name):
            self.depth.pop(phase_name, None)

    return PrintProgress()


def _network_and_flags(trt, graph_precision: str, precision: str) -> tuple[bool, list]:
    """(strongly_typed, builder flags to set) for this TensorRT and precision request."""
    if graph_precision == "fp16":
        if precision != "fp16":
            raise EngineBuildError("the ONNX graph computes in fp16; an fp32 engine needs an fp32 export")
        return True, []
    if precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise EngineBuildError(
                f"TensorRT {trt.__version__} takes precision from the graph (strong typing only): "
                "export the decoder with --precision fp16 and build from that file")
        return False, [trt.BuilderFlag.FP16]
    return True, []


def build_engine(onnx_path: str | Path, engine_path: str | Path, precision: str | None = None,
                 profiles: Sequence[ProfileSpec] = (ProfileSpec(),),
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, timing_cache: str | Path | None = None,
                 log: Callable[[str], None] = print) -> EngineMetadata:
    """Build ``engine_path`` (and ``<engine>.json`` metadata) from an exported decoder.

    ``precision`` defaults to the graph's own. Prints build phases and the build time.
    """
    trt = import_tensorrt()
    identity = current_runtime(trt)
    info = read_decoder_info(onnx_path)
    precision = precision or info.precision
    strongly_typed, flags = _network_and_flags(trt, info.precision, precision)
    if not profiles:
        raise EngineBuildError("at least one optimisation profile is needed")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    has_strong_flag = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed and has_strong_flag else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n  {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    for flag in flags:
        config.set_flag(flag)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    monitor = _progress_monitor(trt, log) if hasattr(trt, "IProgressMonitor") else None
    if monitor is not None:  # referenced here until the build ends: TensorRT does not own it
        config.progress_monitor = monitor

    s = info.shapes
    for spec in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape("image_embed", *[(k, s.embed_dim, s.embed_size, s.embed_size) for k in spec.objects])
        profile.set_shape("sparse", *[(k, p, s.embed_dim) for k, p in zip(spec.objects, spec.prompt_tokens)])
        config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    kind = "strongly typed" if strongly_typed else "weakly typed"
    log(f"[TensorRT {trt.__version__}] building {precision} ({kind}) engine from {onnx_path} "
        f"on {identity.gpu_name} (sm {identity.compute_capability}), workspace {workspace_bytes >> 20} MiB")
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - start
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    if cache_path:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    meta = EngineMetadata(runtime=identity, shapes=info.shapes, precision=precision,
                          strongly_typed=strongly_typed or tensorrt_major(trt) >= 11,
                          profiles=[spec.as_dict() for spec in profiles], onnx_sha256=file_sha256(onnx_path),
                          weights_fingerprint=info.weights_fingerprint, workspace_bytes=int(workspace_bytes),
                          build_seconds=round(seconds, 3))
    meta.write(metadata_path(engine_path))
    log(f"[TensorRT] engine written to {engine_path} in {seconds:.1f} s")
    return meta


def profile_from_dict(data: dict[str, list[int]]) -> ProfileSpec:
    return ProfileSpec(objects=tuple(data[OBJECTS_AXIS]), prompt_tokens=tuple(data[PROMPT_AXIS]))

