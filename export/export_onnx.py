"""Export the UniPixel SAM 2.1 mask decoder to ONNX (checked by onnx.checker and for TensorRT)."""
from __future__ import annotations

import argparse
import sys

from export.model_args import add_model_arguments, load_model
from unipixel_ros.decoders.onnx_export import DEFAULT_OPSET, INPUT_NAMES, OUTPUT_NAMES, PRECISIONS, export_decoder_onnx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.export_onnx", description=__doc__)
    add_model_arguments(parser)
    parser.add_argument("--output", required=True, help="ONNX file to write (weights inline)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="compute precision inside the graph; I/O stays fp32. fp16 is what a "
                             "strongly typed TensorRT (11, or 10 with strong typing) builds as fp16")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    args = parser.parse_args(argv)

    sam2 = load_model(args)
    info = export_decoder_onnx(sam2, args.output, precision=args.precision, opset=args.opset)
    s = info.shapes
    print(f"wrote {args.output}: opset {info.opset}, {info.precision}, passes onnx.checker and the "
          f"TensorRT op check")
    print(f"  inputs  {', '.join(INPUT_NAMES)}: [K,{s.embed_dim},{s.embed_size},{s.embed_size}] "
          f"[1,{s.s0_channels},{s.s0_size},{s.s0_size}] [1,{s.s1_channels},{s.s1_size},{s.s1_size}] "
          f"[K,P,{s.embed_dim}]")
    print(f"  outputs {', '.join(OUTPUT_NAMES)}: [K,1,{s.mask_size},{s.mask_size}] [K,1] "
          f"[K,{s.embed_dim}] [K,1]")
    print(f"  decoder weights sha256 {info.weights_fingerprint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
