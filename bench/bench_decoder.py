"""Mask decoder latency per backend, as a ratio to PyTorch, measured side by side.

Uses a random SAM 2.1 whose mask decoder has UniPixel's real size and shapes (256-d,
image size 768: 48x48 embedding, 192x192 masks); decoder cost does not depend on the
weights' values. Backends that cannot run here (TensorRT without a GPU) are reported
and skipped.

    python bench/bench_decoder.py [--objects 1 8] [--threads 1] [--repeats 20]
    python bench/bench_decoder.py --smoke       # seconds: does it run (numbers meaningless)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unipixel_ros.decoders.base import MaskDecoderBackend  # noqa: E402
from unipixel_ros.decoders.factory import ArtifactPaths, create_decoder_backend  # noqa: E402
from unipixel_ros.decoders.onnx_export import export_decoder_onnx  # noqa: E402
from unipixel_ros.decoders.ort_backend import OnnxRuntimeMaskDecoder  # noqa: E402
from unipixel_ros.decoders.parity import random_inputs  # noqa: E402
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder  # noqa: E402
from unipixel_ros.geometry import SAM_IMAGE_SIZE  # noqa: E402
from unipixel_ros.model.sam2_source import tiny_sam2  # noqa: E402

SMOKE = dict(objects=[1], repeats=1, image_size=256)


def median_ms(backend: MaskDecoderBackend, inputs, repeats: int, sync: bool) -> float:
    for _ in range(3):
        backend(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend(inputs)
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime alike")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=SAM_IMAGE_SIZE)
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)

    torch.set_num_threads(args.threads)
    sam2 = tiny_sam2(args.image_size)
    gpu = torch.cuda.is_available()
    if gpu:
        sam2 = sam2.cuda()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        onnx_path = ArtifactPaths.in_directory(tmp, "fp32").onnx
        export_decoder_onnx(sam2, onnx_path)
        print(f"ONNX export: {time.perf_counter() - start:.1f} s")
        backends: dict[str, MaskDecoderBackend] = {
            "torch (fp32)": TorchMaskDecoder(sam2),
            "onnxruntime (fp32)": OnnxRuntimeMaskDecoder(onnx_path, intra_op_threads=args.threads),
        }
        start = time.perf_counter()
        choice = create_decoder_backend("tensorrt", sam2, ArtifactPaths.in_directory(tmp, "fp16"),
                                        precision="fp16", rebuild=True, log=lambda _: None)
        if choice.fallback_reason:
            print(f"tensorrt skipped: {choice.fallback_reason}")
        else:
            backends["tensorrt (fp16)"] = choice.backend
            print(f"TensorRT export + build: {time.perf_counter() - start:.1f} s")

        device = "cuda" if gpu else f"CPU, {args.threads} thread(s)"
        print(f"\nmask decoder, image size {args.image_size}, {device}, median of {args.repeats}")
        print(f"{'objects':>7s}  {'backend':20s} {'ms':>9s} {'vs torch':>9s}")
        for k in args.objects:
            inputs = random_inputs(sam2, k, seed=0, seed_frame=True)
            timings = {name: median_ms(b, inputs, args.repeats, gpu) for name, b in backends.items()}
            base = timings["torch (fp32)"]
            for name, ms in timings.items():
                print(f"{k:7d}  {name:20s} {ms:9.2f} {ms / base:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
