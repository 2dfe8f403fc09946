"""UniPixel: Qwen2.5-VL with a visual-prompt encoder, a memory projector and a ``<SEG>`` head.

Module names and shapes follow the published checkpoints: ``sam2`` (a pip-sam2
``SAM2Base``), ``seg_head``, ``ref_encoder`` (a SAM ``PromptEncoder``),
``ref_proj_single`` / ``ref_proj_double`` / ``ref_proj``, ``tem_pe`` / ``tem_emb`` /
``tem_proj`` and ``msk_proj`` next to Qwen2.5-VL's ``model`` and ``lm_head``.

Every request goes through explicit inputs and returns its results; nothing about a
request is kept on the module. SAM 2 itself is driven elsewhere: this module turns
``<|seg|>`` positions into SAM prompt tokens.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, Cache, DynamicCache, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRMSNorm

from unipixel_ros.geometry import GeometryError, temporal_coordinate
from unipixel_ros.model.config import PixelQwen2_5_VLConfig, resolve_sam2_config
from unipixel_ros.model.inputs import ModelInputError, ReferenceInput, UniPixelInputs
from unipixel_ros.model.rope import mrope_position_ids
from unipixel_ros.model.static_decode import StaticDecoder
from unipixel_ros.regions import pool_region_features

# Label of the "not a point" entry SAM's prompt encoder appends to point prompts.
_PADDING_LABEL = -1
# KV cache and decode step of generate_greedy: eager is the reference (see its docstring).
DECODE_MODES = ("eager", "static", "compiled")
# Guards the lazy creation of a model's static decoders.
_DECODER_LOCK = threading.Lock()


def fourier_features(coords: torch.Tensor, gaussian_matrix: torch.Tensor) -> torch.Tensor:
    """Random Fourier features of coordinates normalised to [0, 1], computed in float32.

    SAM's positional encoding, written out so it also runs with half-precision
    weights: the published model evaluates it in float32 and casts the result to
    the weight dtype.
    """
    coords = 2 * coords.float() - 1
    coords = coords @ gaussian_matrix.float()
    coords = 2 * math.pi * coords
    return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


class TemporalPositionEncoding(nn.Module):
    """1-D random Fourier features of a frame position in [0, 1] (``tem_pe``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((1, num_features)))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(N,) positions -> (N, 2 * num_features) features in the buffer's dtype."""
        features = fourier_features(positions.reshape(-1, 1), self.positional_encoding_gaussian_matrix)
        return features.to(self.positional_encoding_gaussian_matrix.dtype)


@dataclass
class VideoFeatures:
    """Vision-tower outputs for one video.

    ``embeds`` replace the ``<|video_pad|>`` tokens (row order); ``merger_inputs`` are
    the merger MLP's inputs, in Qwen2.5-VL's window-grouped order, which ``<|mem|>``
    pooling reads.
    """

    embeds: torch.Tensor
    merger_inputs: torch.Tensor


@dataclass
class GreedyOutput:
    """A greedy continuation: the new token ids (without the final end-of-turn token) and
    one SAM prompt-token pair per ``<|seg|>`` in prompt then answer order."""

    token_ids: list[int]
    seg_tokens: torch.Tensor
    prompt_seg_count: int
    finished: bool


@contextmanager
def _captured_inputs(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The first positional input of each call of ``module`` made by this thread inside the block."""
    captured: list[torch.Tensor] = []
    owner = threading.get_ident()

    def record(_module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == owner:
            captured.append(args[0])

    handle = module.register_forward_pre_hook(record)
    try:
        yield captured
    finally:
        handle.remove()


class PixelQwen2_5_VLForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL extended with UniPixel's referring, memory and segmentation parts."""

    config_class = PixelQwen2_5_VLConfig
    config: PixelQwen2_5_VLConfig

    def __init__(self, config: PixelQwen2_5_VLConfig) -> None:
        super().__init__(config)
        from unipixel_ros.model.sam2_source import build_sam2_model

        sam2_file, sam2_overrides = resolve_sam2_config(config.sam2_config)
        self.sam2 = build_sam2_model(sam2_file, config.sam2_image_size, sam2_overrides)

        sam_dim = self.sam2.hidden_dim
        llm_dim = config.text_config.hidden_size
        merger_dim = self.model.visual.merger.hidden_size
        grid = self.sam2.sam_image_embedding_size

        self.seg_head = nn.Sequential(
            Qwen2_5_VLRMSNorm(llm_dim), nn.Linear(llm_dim, llm_dim), nn.GELU(),
            nn.Linear(llm_dim, sam_dim * config.sam2_hidden_tokens))
        self.ref_encoder = PromptEncoder(embed_dim=sam_dim, image_embedding_size=(grid, grid),
                                         input_image_size=(config.sam2_image_size, config.sam2_image_size),
                                         mask_in_chans=16)
        self.ref_proj_single = nn.Linear(sam_dim * 2, sam_dim * 3)
        self.ref_proj_double = nn.Linear(sam_dim * 3, sam_dim * 3)
        self.ref_proj = nn.Sequential(nn.GELU(), nn.Linear(sam_dim * 6, llm_dim))
        self.tem_pe = TemporalPositionEncoding(sam_dim // 2)
        self.tem_emb = nn.Embedding(1, sam_dim)
        self.tem_proj = nn.Linear(sam_dim, sam_dim * 3)
        self.msk_proj = nn.Sequential(nn.Linear(merger_dim, merger_dim), nn.GELU(), nn.Linear(merger_dim, llm_dim))
        self.post_init()

    # ------------------------------------------------------------------ inputs

    def video_features(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor) -> VideoFeatures:
        """Run the vision tower once and keep both the token embeddings and the merger inputs."""
        visual = self.model.visual
        out = visual(pixel_values_videos.to(visual.device, visual.dtype), grid_thw=video_grid_thw.to(visual.device))
        merger = visual.merger
        merger_inputs = merger.ln_q(out.last_hidden_state).view(-1, merger.hidden_size)
        return VideoFeatures(embeds=out.pooler_output, merger_inputs=merger_inputs)

    def _frames_seen(self, video_grid_thw: torch.Tensor) -> int:
        """Frames the model saw: temporal grid steps times frames per step (even count)."""
        return int(video_grid_thw[0, 0]) * self.config.vision_config.temporal_patch_size

    def _prompt_tokens(self, reference: ReferenceInput) -> torch.Tensor:
        """SAM sparse prompt embeddings of one point (2 tokens) or box (3 tokens), as (1, K, C).

        The box corners go in as two labelled points, so a box is padded like a point
        (SAM pads whenever no box argument is given), which is how the model was trained.
        """
        encoder = self.ref_encoder
        device = encoder.not_a_point_embed.weight.device
        points = reference.coords.to(device).to(torch.float32) + 0.5
        labels = reference.labels.to(device).long()
        points = torch.cat([points, points.new_zeros(1, 2)])
        labels = torch.cat([labels, labels.new_full((1,), _PADDING_LABEL)])
        height, width = encoder.input_image_size
        normalised = points / torch.tensor([width, height], dtype=torch.float32, device=device)
        gaussian = encoder.pe_layer.positional_encoding_gaussian_matrix
        embeddings = fourier_features(normalised, gaussian).to(gaussian.dtype)
        label_table = torch.cat([e.weight for e in encoder.point_embeddings])
        is_padding = (labels == _PADDING_LABEL).unsqueeze(-1)
        embeddings = torch.where(is_padding, encoder.not_a_point_embed.weight.expand_as(embeddings),
                                 embeddings + label_table[labels.clamp(min=0)])
        return embeddings.unsqueeze(0)

    def reference_embeddings(self, references: Sequence[ReferenceInput], video_grid_thw: torch.Tensor) -> torch.Tensor:
        """The ``<|ref|>`` embeddings (N, hidden): prompt geometry plus frame position."""
        spatial = []
        for reference in references:
            tokens = self._prompt_tokens(reference).flatten(1)
            project = self.ref_proj_single if len(reference.labels) == 1 else self.ref_proj_double
            spatial.append(project(tokens))
        frames = self._frames_seen(video_grid_thw)
        try:
            coordinates = [temporal_coordinate(r.frame_index, frames) for r in references]
        except GeometryError as error:
            raise ModelInputError(f"reference prompt: {error}") from error
        positions = torch.tensor(coordinates, dtype=torch.float32, device=self.tem_emb.weight.device)
        temporal = self.tem_pe(positions) + self.tem_emb.weight
        temporal = self.tem_proj(temporal)
        return self.ref_proj(torch.cat([torch.cat(spatial), temporal], dim=1))

    def memory_embeddings(self, merger_inputs: torch.Tensor, region_masks: torch.Tensor,
                          video_grid_thw: torch.Tensor) -> torch.Tensor:
        """The ``<|mem|>`` embeddings (M, hidden): one per (object, frame pair) with a non-empty region."""
        grid_t, grid_h, grid_w = (int(v) for v in video_grid_thw[0])
        merge = self.config.vision_config.spatial_merge_size
        if region_masks.dim() != 4 or (region_masks.shape[0], *region_masks.shape[2:]) != (
                grid_t, grid_h // merge, grid_w // merge):
            raise ModelInputError(f"region_masks must have shape (grid_t, objects, grid_h/{merge}, grid_w/{merge}) "
                                  f"with grid {(grid_t, grid_h, grid_w)}, got {tuple(region_masks.shape)}")
        return self.msk_proj(pool_region_features(merger_inputs, region_masks.bool()))

    def embed_inputs(self, inputs: UniPixelInputs) -> torch.Tensor:
        """Token embeddings (1, L, hidden) with video, ``<|ref|>`` and ``<|mem|>`` positions filled in."""
        embed = self.get_input_embeddings()
        input_ids = inputs.input_ids.to(embed.weight.device)
        embeds = embed(input_ids)
        replacements: list[tuple[int, str, torch.Tensor | None]] = []
        if inputs.video_grid_thw is not None:
            video = self.video_features(inputs.pixel_values_videos, inputs.video_grid_thw)
            replacements.append((self.config.video_token_id, "video", video.embeds))
            refs = (self.reference_embeddings(inputs.references, inputs.video_grid_thw)
                    if inputs.references else None)
            replacements.append((self.config.ref_token_id, "<|ref|>", refs))
            mems = (self.memory_embeddings(video.merger_inputs, inputs.region_masks, inputs.video_grid_thw)
                    if inputs.region_masks is not None else None)
            replacements.append((self.config.mem_token_id, "<|mem|>", mems))
        for token_id, name, values in replacements:
            positions = input_ids == token_id
            count = int(positions.sum())
            given = 0 if values is None else values.shape[0]
            if count != given:
                raise ModelInputError(f"the text has {count} {name} token(s) but {given} embedding(s) were given")
            if count:
                mask = positions.unsqueeze(-1).expand_as(embeds)
                embeds = embeds.masked_scatter(mask, values.to(embeds.dtype))
        if inputs.video_grid_thw is None:
            for token_id, name in ((self.config.ref_token_id, "<|ref|>"), (self.config.mem_token_id, "<|mem|>"),
                                   (self.config.video_token_id, "video")):
                if bool((input_ids == token_id).any()):
                    raise ModelInputError(f"the text has {name} tokens but no video was given")
        return embeds

    def position_ids(self, inputs: UniPixelInputs) -> tuple[torch.Tensor, int]:
        """M-RoPE positions (3, 1, L) of the prompt and the offset for generated tokens."""
        positions, offset = mrope_position_ids(
            inputs.input_ids[0], inputs.video_grid_thw, inputs.second_per_grid_ts,
            video_token_id=self.config.video_token_id, vision_start_token_id=self.config.vision_start_token_id,
            spatial_merge_size=self.config.vision_config.spatial_merge_size,
            tokens_per_second=self.config.vision_config.tokens_per_second)
        return positions.unsqueeze(1), offset

    # ------------------------------------------------------------------ decoding

    def seg_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Pre-norm last-layer hidden states (N, hidden) -> SAM prompt tokens (N, hidden_tokens, sam_dim)."""
        tokens = self.seg_head(hidden)
        return tokens.view(hidden.shape[0], self.config.sam2_hidden_tokens, self.sam2.hidden_dim)

    def _decoder_step(self, embeds: torch.Tensor, positions: torch.Tensor,
                      cache: Cache) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the language model on new embeddings; returns pre-norm hidden states (L, hidden)
        and the next-token logits of the last position."""
        language_model = self.model.language_model
        with _captured_inputs(language_model.norm) as pre_norm:
            out = language_model(inputs_embeds=embeds, position_ids=positions.to(embeds.device),
                                 cache=cache, use_cache=True)
        logits = self.lm_head(out.last_hidden_state[:, -1])
        return pre_norm[-1][0], logits[0]

    @torch.inference_mode()
    def prompt_seg_tokens(self, inputs: UniPixelInputs) -> torch.Tensor:
        """SAM prompt tokens for the ``<|seg|>`` tokens already in the text (one forward pass)."""
        hidden, _, _, _ = self._prefill(inputs)
        return self.seg_tokens(hidden[self._seg_predictor_positions(inputs.input_ids).to(hidden.device)])

    def _seg_predictor_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Indices of the positions whose next token is ``<|seg|>``."""
        return torch.nonzero(input_ids[0, 1:] == self.config.seg_token_id).flatten()

    def _prefill(self, inputs: UniPixelInputs,
                 cache: Cache | None = None) -> tuple[torch.Tensor, torch.Tensor, Cache, int]:
        embeds = self.embed_inputs(inputs)
        positions, offset = self.position_ids(inputs)
        if cache is None:
            cache = DynamicCache(config=self.config.text_config)
        hidden, logits = self._decoder_step(embeds, positions, cache)
        return hidden, logits, cache, offset

    def static_decoder(self, compiled: bool) -> StaticDecoder:
        """The static-cache decoder (compiled or not) of this model, made on first use and kept:
        its cache and compiled graph serve every later request."""
        with _DECODER_LOCK:
            decoders = self.__dict__.setdefault("_static_decoders", {})
            if compiled not in decoders:
                decoders[compiled] = StaticDecoder(self, compile_step=compiled)
            return decoders[compiled]

    @torch.inference_mode()
    def generate_greedy(self, inputs: UniPixelInputs, max_new_tokens: int = 512,
                        eos_token_ids: Sequence[int] | None = None,
                        on_token: Callable[[int], bool | None] | None = None,
                        decode: str | StaticDecoder = "eager") -> GreedyOutput:
        """Greedy decoding; ``on_token`` sees each new token and stops decoding by returning False.

        ``decode`` picks the KV cache and step: ``eager`` (a fresh ``DynamicCache``, the
        reference), ``static`` (a preallocated cache and fixed-shape steps) or
        ``compiled`` (the static step compiled by torch.compile), or a given
        :class:`StaticDecoder`. All give the same tokens and ``<SEG>`` hidden states up
        to floating-point rounding.
        """
        if max_new_tokens < 1:
            raise ModelInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not isinstance(decode, StaticDecoder) and decode not in DECODE_MODES:
            raise ModelInputError(f"decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}")
        stop_ids = set(self._eos_ids() if eos_token_ids is None else eos_token_ids)
        if decode == "eager":
            hidden, logits, cache, offset = self._prefill(inputs)
            return self._greedy_loop(inputs, hidden, logits, offset, max_new_tokens, stop_ids, on_token,
                                     lambda embeds, positions: self._decoder_step(embeds, positions, cache))
        decoder = decode if isinstance(decode, StaticDecoder) else self.static_decoder(decode == "compiled")
        with decoder.lock:
            cache = decoder.start(inputs.input_ids.shape[1] + max_new_tokens)
            hidden, logits, _, offset = self._prefill(inputs, cache)
            return self._greedy_loop(inputs, hidden, logits, offset, max_new_tokens, stop_ids, on_token,
                                     decoder.step)

    def _greedy_loop(self, inputs: UniPixelInputs, hidden: torch.Tensor, logits: torch.Tensor, offset: int,
                     max_new_tokens: int, stop_ids: set[int], on_token: Callable[[int], bool | None] | None,
                     step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
                     ) -> GreedyOutput:
        """Greedy continuation of a prefilled prompt; ``step`` runs one token through the cache.

        Every generated token sits at the same position on the three M-RoPE axes: its
        index in the sequence plus the prompt's ``offset``.
        """
        seg_hidden = [hidden[self._seg_predictor_positions(inputs.input_ids).to(hidden.device)]]
        prompt_seg_count = seg_hidden[0].shape[0]
        prompt_len = inputs.input_ids.shape[1]
        embed = self.get_input_embeddings()
        device = embed.weight.device
        token_ids: list[int] = []
        finished = False
        while True:
            next_id = int(logits.argmax())
            if next_id == self.config.seg_token_id:
                seg_hidden.append(hidden[-1:])
            if next_id in stop_ids:
                finished = True
                break
            token_ids.append(next_id)
            if (on_token is not None and on_token(next_id) is False) or len(token_ids) >= max_new_tokens:
                break
            position = prompt_len + len(token_ids) - 1 + offset
            positions = torch.full((3, 1, 1), position, dtype=torch.long, device=device)
            token = torch.tensor([[next_id]], device=device)
            hidden, logits = step(embed(token), positions)
        return GreedyOutput(token_ids=token_ids, seg_tokens=self.seg_tokens(torch.cat(seg_hidden)),
                            prompt_seg_count=prompt_seg_count, finished=finished)

    def _eos_ids(self) -> list[int]:
        eos = self.generation_config.eos_token_id
        if eos is None:
            eos = self.config.text_config.eos_token_id
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]


AutoModel.register(PixelQwen2_5_VLConfig, PixelQwen2_5_VLForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(PixelQwen2_5_VLConfig, PixelQwen2_5_VLForConditionalGeneration, exist_ok=True)
