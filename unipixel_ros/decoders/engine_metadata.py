"""The JSON file that sits beside a TensorRT engine and says what it was built for.

A serialized engine runs only with the TensorRT version and the GPU it was built
with; loading it elsewhere fails deep inside TensorRT or, worse, runs kernels tuned
for another GPU. The metadata makes that check cheap and the refusal readable.
Nothing here imports tensorrt, so the checks are testable anywhere.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from unipixel_ros.decoders.graph import DecoderShapes


class EngineMetadataError(ValueError):
    """Missing or unreadable engine metadata."""


@dataclass(frozen=True)
class RuntimeIdentity:
    """What an engine is bound to: the TensorRT release and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.7" on Jetson Orin


@dataclass(frozen=True)
class EngineMetadata:
    runtime: RuntimeIdentity
    shapes: DecoderShapes
    precision: str  # "fp32" | "fp16"
    strongly_typed: bool  # precision taken from the graph (TensorRT >= 11, or fp16 ONNX)
    profiles: list[dict[str, list[int]]]  # per profile: axis name -> [min, opt, max]
    onnx_sha256: str
    weights_fingerprint: str
    workspace_bytes: int
    build_seconds: float

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> "EngineMetadata":
        path = Path(path)
        if not path.is_file():
            raise EngineMetadataError(f"no engine metadata at {path}")
        try:
            data = json.loads(path.read_text())
            return cls(runtime=RuntimeIdentity(**data.pop("runtime")),
                       shapes=DecoderShapes(**data.pop("shapes")), **data)
        except (ValueError, TypeError, KeyError) as e:
            raise EngineMetadataError(f"unreadable engine metadata {path}: {e}") from e

    def max_objects(self) -> int:
        return min(p["objects"][2] for p in self.profiles)


def metadata_path(engine_path: str | Path) -> Path:
    """``decoder.engine`` -> ``decoder.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def runtime_mismatches(meta: EngineMetadata, current: RuntimeIdentity) -> list[str]:
    """Human-readable reasons why an engine built for ``meta`` must not run on ``current``."""
    reasons = []
    built = meta.runtime
    if built.tensorrt_version != current.tensorrt_version:
        reasons.append(f"built with TensorRT {built.tensorrt_version}, running TensorRT "
                       f"{current.tensorrt_version}")
    if built.compute_capability != current.compute_capability:
        reasons.append(f"built for compute capability {built.compute_capability}, this GPU has "
                       f"{current.compute_capability}")
    if built.gpu_name != current.gpu_name:
        reasons.append(f"built on '{built.gpu_name}', running on '{current.gpu_name}'")
    return reasons
