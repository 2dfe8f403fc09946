"""Build a TensorRT engine (plus <engine>.json metadata) from an exported decoder ONNX file."""
from __future__ import annotations

import argparse
import sys

from unipixel_ros.decoders.onnx_export import PRECISIONS
from unipixel_ros.decoders.trt_build import DEFAULT_WORKSPACE_BYTES, ProfileSpec, build_engine
from unipixel_ros.decoders.trt_runtime import BackendUnavailable


def _triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.build_engine", description=__doc__)
    parser.add_argument("--onnx", required=True, help="file written by export.export_onnx")
    parser.add_argument("--engine", required=True, help="engine file to write")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="engine precision (default: the graph's). fp16 from an fp32 graph "
                             "needs TensorRT 10 (BuilderFlag.FP16); TensorRT 11 needs an fp16 export")
    parser.add_argument("--objects", type=_triple, action="append", metavar="MIN,OPT,MAX",
                        help="object-count range of one optimisation profile (repeatable; "
                             "default 1,4,16)")
    parser.add_argument("--prompt-tokens", type=_triple, default=(2, 4, 8), metavar="MIN,OPT,MAX",
                        help="sparse prompt length range, the same for every profile "
                             "(2 = tracked frame, 4 = seed frame; default %(default)s)")
    parser.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_BYTES >> 20,
                        help="builder workspace limit in MiB (default %(default)s)")
    parser.add_argument("--timing-cache", help="timing cache file, read if present and updated")
    args = parser.parse_args(argv)

    profiles = [ProfileSpec(objects=o, prompt_tokens=args.prompt_tokens) for o in (args.objects or [(1, 4, 16)])]
    try:
        meta = build_engine(args.onnx, args.engine, precision=args.precision, profiles=profiles,
                            workspace_bytes=args.workspace_mib << 20, timing_cache=args.timing_cache)
    except BackendUnavailable as e:
        print(f"cannot build a TensorRT engine here: {e}", file=sys.stderr)
        return 2
    print(f"{meta.precision} engine for {meta.runtime.gpu_name} (sm {meta.runtime.compute_capability}), "
          f"TensorRT {meta.runtime.tensorrt_version}, built in {meta.build_seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
