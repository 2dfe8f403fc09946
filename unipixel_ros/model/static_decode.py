"""Greedy decode steps over a preallocated (static) KV cache, optionally compiled.

The eager decode in :mod:`unipixel_ros.model.modeling` grows a ``DynamicCache`` by
one token per step, so every step has new shapes and launches hundreds of small
kernels from Python: at batch 1 a GPU waits on the host. Here the cache is
allocated once for ``prompt + max_new_tokens`` (rounded up to a size bucket so one
compiled graph serves many requests) and a decode step always has the same shapes
and the same tensor addresses, which is what ``torch.compile`` (and, with
``mode="reduce-overhead"`` on CUDA, its CUDA graphs) needs.

The step runs the language model's own layers, rotary embedding, norm and mask
builder; it only differs from ``language_model.forward`` in returning the
pre-norm hidden state too (the ``<SEG>`` head reads it), without a module hook,
which a compiled graph could not keep.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import torch
from torch import nn
from transformers import StaticCache
from transformers.masking_utils import create_causal_mask

# Cache lengths are rounded up to a multiple of this, so requests of similar length
# reuse one cache and one compiled graph (each new length compiles once more).
CACHE_BUCKET = 256
LOG = logging.getLogger(__name__)

DecodeStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def bucketed_length(needed: int, bucket: int = CACHE_BUCKET) -> int:
    """``needed`` rounded up to a whole number of ``bucket`` tokens."""
    return -(-needed // bucket) * bucket


class StaticDecoder:
    """A static KV cache and a decode step (eager or compiled) for one language model.

    The cache is scratch memory reused by consecutive requests (each starts with
    :meth:`start`), not request state; one request uses it at a time (``lock``).
    """

    def __init__(self, model: nn.Module, compile_step: bool = False, backend: str = "inductor",
                 fullgraph: bool = False) -> None:
        self.model = model           # a Qwen2.5-VL for generation: ``model.language_model``, ``lm_head``
        self.compile_step = compile_step
        self.backend = backend       # torch.compile backend; tests use aot_eager (no C compiler, fast)
        self.fullgraph = fullgraph   # raise on any graph break instead of running around it
        self.compile_error: str | None = None
        self.lock = threading.Lock()
        self.cache: StaticCache | None = None
        self._capacity = 0
        self._compiled: DecodeStep | None = None

    def start(self, needed: int) -> StaticCache:
        """An empty cache holding at least ``needed`` tokens (reused when large enough)."""
        if self.cache is None or self._capacity < needed:
            self._capacity = bucketed_length(needed)
            self.cache = StaticCache(config=self.model.model.language_model.config, max_cache_len=self._capacity)
        else:
            self.cache.reset()
        return self.cache

    def step(self, embeds: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token (1, 1, hidden) at M-RoPE ``positions`` (3, 1, 1) -> (pre-norm hidden (1, hidden),
        next-token logits (vocab,)); the cache must hold the prompt already."""
        if not self.compile_step:
            return self._step(embeds, positions)
        if embeds.device.type == "cuda":
            # A CUDA-graph replay overwrites the previous step's outputs: callers keep clones.
            torch.compiler.cudagraph_mark_step_begin()
        if self._compiled is None:
            self._compiled = compile_decode_step(self._step, embeds.device, self.backend, self.fullgraph)
            try:
                hidden, logits = self._compiled(embeds, positions)
            except Exception as error:  # noqa: BLE001 - any compiler failure: keep decoding uncompiled
                # Compilation fails before the step runs, so the cache has not moved.
                self.compile_error = f"{type(error).__name__}: {error}"
                LOG.warning("torch.compile of the decode step failed, decoding uncompiled: %s", self.compile_error)
                self.compile_step = False
                return self._step(embeds, positions)
        else:
            hidden, logits = self._compiled(embeds, positions)
        return hidden.clone(), logits

    def _step(self, embeds: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        language_model = self.model.model.language_model
        mask = create_causal_mask(config=language_model.config, inputs_embeds=embeds, attention_mask=None,
                                  cache=self.cache, position_ids=None)
        hidden = embeds
        rotary = language_model.rotary_emb(hidden, positions)
        for layer in language_model.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary, position_ids=None,
                           cache=self.cache, use_cache=True)
        logits = self.model.lm_head(language_model.norm(hidden)[:, -1])
        return hidden[0], logits[0]


def compile_decode_step(step: DecodeStep, device: torch.device, backend: str = "inductor",
                        fullgraph: bool = False) -> DecodeStep:
    """``step`` compiled by inductor: with CUDA graphs on a GPU (``reduce-overhead``), plain on the CPU.

    Shapes are fixed (``dynamic=False``): a decode step never changes shape for a
    given cache. Compilation itself happens on the first call.
    """
    if backend != "inductor":
        return torch.compile(step, backend=backend, fullgraph=fullgraph, dynamic=False)
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    return torch.compile(step, mode=mode, fullgraph=fullgraph, dynamic=False)
