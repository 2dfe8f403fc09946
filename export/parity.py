"""Check an exported decoder (onnxruntime or TensorRT) against PyTorch on the same inputs.

Prints per run the max |logit difference|, the mask IoU per object and the IoU-score
difference, and exits 1 when any run exceeds the tolerances of its precision
(unipixel_ros.decoders.parity explains them).
"""
from __future__ import annotations

import argparse
import sys

import torch

from export.model_args import add_model_arguments, load_model
from unipixel_ros.decoders.parity import TOLERANCES, random_inputs, run_parity
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder
from unipixel_ros.decoders.trt_runtime import BackendUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.parity", description=__doc__)
    add_model_arguments(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--onnx", help="exported decoder to run with onnxruntime (CPU)")
    target.add_argument("--engine", help="TensorRT engine (the model then runs on the GPU)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3, 8], help="object counts to try")
    parser.add_argument("--seeds", type=int, default=3, help="random inputs per object count")
    args = parser.parse_args(argv)

    sam2 = load_model(args)
    try:
        if args.onnx:
            from unipixel_ros.decoders.ort_backend import OnnxRuntimeMaskDecoder

            backend = OnnxRuntimeMaskDecoder(args.onnx)
            precision = backend.info.precision
        else:
            from unipixel_ros.decoders.onnx_export import weights_fingerprint
            from unipixel_ros.decoders.trt_backend import TensorRTMaskDecoder

            sam2 = sam2.cuda() if torch.cuda.is_available() else sam2
            backend = TensorRTMaskDecoder(args.engine, weights_fingerprint(sam2), "cuda")
            precision = backend.meta.precision
    except BackendUnavailable as e:
        print(f"cannot run the parity check here: {e}", file=sys.stderr)
        return 2
    tolerance = TOLERANCES[precision]
    reference = TorchMaskDecoder(sam2)
    failed = False
    for k in args.objects:
        for seed in range(args.seeds):
            report = run_parity(reference, backend, random_inputs(sam2, k, seed, seed_frame=seed % 2 == 0))
            problems = report.failures(tolerance)
            failed |= bool(problems)
            print(f"[{'FAIL' if problems else 'ok'}] seed {seed}: {report.summary()}"
                  + (f" -- {'; '.join(problems)}" if problems else ""))
    print(f"{precision} tolerances: {tolerance}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
