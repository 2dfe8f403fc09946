"""The PyTorch mask decoder backend: the reference every exported backend is checked against."""
from __future__ import annotations

import torch
from torch import nn

from unipixel_ros.decoders.base import DecoderInputs, DecoderOutputs
from unipixel_ros.decoders.graph import MaskDecoderGraph, run_graph


class TorchMaskDecoder:
    """Runs ``MaskDecoderGraph`` on the SAM 2 model's own device and dtype, without autograd."""

    name = "torch"

    def __init__(self, sam2_model: nn.Module):
        self.graph = MaskDecoderGraph(sam2_model)
        self.shapes = self.graph.shapes

    @torch.inference_mode()
    def __call__(self, inputs: DecoderInputs) -> DecoderOutputs:
        return run_graph(self.graph, inputs)
