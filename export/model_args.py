"""The ``--checkpoint`` / ``--tiny`` choice of where the SAM 2 decoder weights come from."""
from __future__ import annotations

import argparse

from torch import nn

from unipixel_ros.model.sam2_source import load_sam2_from_checkpoint, tiny_sam2


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH_OR_HUB_ID",
                        help="UniPixel checkpoint: a local folder or a Hugging Face model id "
                             "(only config.json and the shards holding sam2.* are read)")
    source.add_argument("--tiny", action="store_true",
                        help="a random tiny SAM 2.1 with a full-size mask decoder (for checks)")
    parser.add_argument("--image-size", type=int, default=256,
                        help="SAM input size of the --tiny model (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the --tiny model")


def load_model(args: argparse.Namespace) -> nn.Module:
    """The SAM2Base the arguments name."""
    if args.tiny:
        return tiny_sam2(args.image_size, args.seed)
    return load_sam2_from_checkpoint(args.checkpoint)
