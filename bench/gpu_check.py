"""One GPU check of the full-size model: what a query costs, stage by stage, with random weights.

    python bench/gpu_check.py                 # UniPixel-3B architecture, bf16, on cuda (a few minutes)
    python bench/gpu_check.py --size 7b       # the 7B architecture
    python bench/gpu_check.py --smoke         # tiny model on the CPU, seconds (numbers meaningless)

The model is built from the release's config (test/data/unipixel-<size>-parameters.json)
with random weights: nothing is downloaded. Inputs are a 16-frame 640x480 window as the
processor would give it (frames rounded to the 28-pixel patch grid), a short question
and a greedy answer of ``--tokens`` tokens forced past the end-of-turn token.
Printed as one table: vision encoder, prefill, decode ms/token (eager, static and
torch.compile'd static cache) next to the memory-bandwidth floor (bytes of the
language model's weights / device-to-device copy bandwidth measured in the same run),
SAM 2 encode per frame, <SEG> propagation per object over the window, the first and
the second query on the same window (the second finds SAM 2's frame features cached),
tracking frames per second of 1 / 5 / 10 objects in one batched SAM 2 step against one
step per object, the mask decoder through ONNX Runtime's CUDA provider against torch
(where onnxruntime-gpu is installed; otherwise the row says so), the agreement of SAM 2's
masks in bf16 with fp32, and peak GPU memory.
Without a GPU it says so, runs the smoke pass and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from unipixel_ros.model.inputs import UniPixelInputs

ROOT = Path(__file__).resolve().parents[1]
PATCH = 28                      # patch 14 x spatial merge 2: frames are sized to multiples of this


def full_model(size: str, device: str, dtype: torch.dtype):
    """The full-size architecture with random weights (normal, std 0.02; norms 1) on ``device``."""
    from transformers.initialization import no_init_weights

    from unipixel_ros.model.config import PixelQwen2_5_VLConfig
    from unipixel_ros.model.modeling import PixelQwen2_5_VLForConditionalGeneration

    published = json.loads((ROOT / "test" / "data" / f"unipixel-{size}-parameters.json").read_text())
    config = PixelQwen2_5_VLConfig(**published["config"])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            model = PixelQwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and "norm" in name:
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, 0.02)
    return model.requires_grad_(False).eval()


def window_inputs(model, frames: int, height: int, width: int, question_tokens: int = 24) -> UniPixelInputs:
    """Token ids and patch values of a ``frames``-frame video plus a question (random text ids)."""
    config = model.config
    vision = config.vision_config
    grid = (frames // vision.temporal_patch_size, round(height / PATCH) * 2, round(width / PATCH) * 2)
    merge = vision.spatial_merge_size
    video_tokens = grid[0] * (grid[1] // merge) * (grid[2] // merge)
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(0, 256, (question_tokens,), generator=generator)  # plain text ids in any vocab
    ids = torch.cat([text[:4], torch.tensor([config.vision_start_token_id]),
                     torch.full((video_tokens,), config.video_token_id), torch.tensor([config.vision_end_token_id]),
                     text[4:]])
    patch_values = 3 * vision.temporal_patch_size * vision.patch_size ** 2
    pixels = torch.randn(grid[0] * grid[1] * grid[2], patch_values, generator=generator)
    return UniPixelInputs(input_ids=ids[None], pixel_values_videos=pixels, video_grid_thw=torch.tensor([grid]),
                          second_per_grid_ts=[1.0])


def timed(run: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Fastest of ``repeats`` runs after one warm-up [s]."""
    run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def copy_bandwidth(device: torch.device, mebibytes: int) -> float:
    """Device-to-device copy bandwidth [bytes/s]: read plus write of one buffer."""
    source = torch.empty(mebibytes * 2 ** 20, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = timed(lambda: target.copy_(source), device, repeats=5)
    return 2 * source.numel() / seconds


def decode_ms_per_token(model, inputs: UniPixelInputs, tokens: int, decode: str, device: torch.device) -> float:
    """(time of ``tokens`` greedy tokens - time of 1) / (tokens - 1) [ms]: decode steps without the prefill."""
    def generate(count: int) -> Callable[[], object]:
        return lambda: model.generate_greedy(inputs, max_new_tokens=count, eos_token_ids=[], decode=decode)

    return 1000 * (timed(generate(tokens), device) - timed(generate(1), device)) / (tokens - 1)


def first_and_second_query(model, engine, inputs: UniPixelInputs, frames: list[np.ndarray], tokens: int,
                           device: torch.device) -> tuple[float, float]:
    """Seconds of a text query with one <SEG> answer on a window seen for the first time
    (SAM 2 encodes every frame) and on the same window again (frame features cached)."""
    seg = torch.randn(1, model.config.sam2_hidden_tokens, model.sam2.hidden_dim, dtype=model.dtype)
    keys = [("query", i) for i in range(len(frames))]

    def query() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate_greedy(inputs, max_new_tokens=tokens, eos_token_ids=[])
        engine.segment_seg_tokens_many(frames, keys, seg.to(engine.device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return query(), query()


def tracking_fps(engine, frames: list[np.ndarray], counts: tuple[int, ...],
                 steps: int) -> dict[int, tuple[float, float]]:
    """Object count -> (batched, per-object) tracked frames per second, fastest of ``steps`` frames,
    for objects whose memory is full (seeded on the window, then copied)."""
    seg = torch.randn(1, 2, engine.sam2.sam_prompt_embed_dim, generator=torch.Generator().manual_seed(1))
    seed_keys = [("seed", i) for i in range(len(frames))]
    seeded = engine.segment_seg_tokens_many(frames, seed_keys, seg.to(engine.device))[0].state
    live = [np.ascontiguousarray(np.roll(f, 8 * (i + 1), axis=1)) for i, f in enumerate(frames[:steps + 1])]
    live_keys = [("live", i) for i in range(len(live))]
    engine.features(live, live_keys)
    sync = (lambda: torch.cuda.synchronize()) if engine.device.type == "cuda" else (lambda: None)
    results = {}
    for count in counts:
        ways = {"batched": [copy.deepcopy(seeded) for _ in range(count)],
                "single": [copy.deepcopy(seeded) for _ in range(count)]}
        best = {"batched": float("inf"), "single": float("inf")}
        for step, (frame, key) in enumerate(zip(live, live_keys)):
            for way, states in ways.items():
                sync()
                start = time.perf_counter()
                if way == "batched":
                    engine.track_many(states, frame, key)
                else:
                    for state in states:
                        engine.track(state, frame, key)
                sync()
                if step:                        # the first frame warms up
                    best[way] = min(best[way], time.perf_counter() - start)
        results[count] = (1 / best["batched"], 1 / best["single"])
    return results


def bf16_mask_agreement(engine, frames: list[np.ndarray]) -> str:
    """IoU of the masks SAM 2 propagates in bf16 and in fp32 from the same <SEG> tokens, per frame:
    whether bf16 keeps the masks (random weights: the masks mean nothing, their agreement does)."""
    from unipixel_ros.model.sam2_engine import Sam2Engine
    from unipixel_ros.scoring import mask_iou

    reference = Sam2Engine(copy.deepcopy(engine.sam2).float())
    seg = torch.randn(1, 2, engine.sam2.sam_prompt_embed_dim, generator=torch.Generator().manual_seed(2))
    keys = [("bf16", i) for i in range(len(frames))]
    low = engine.segment_seg_tokens_many(frames, keys, seg.to(engine.device, engine.dtype))[0].masks
    full = reference.segment_seg_tokens_many(frames, keys, seg.to(reference.device))[0].masks
    ious = [mask_iou(a, b) for a, b in zip(low, full)]
    return f"mask IoU bf16 vs fp32: min {min(ious):.3f}, mean {np.mean(ious):.3f} over {len(ious)} frames"


def onnx_decoder_ratio(sam2, repeats: int) -> str:
    """The mask decoder through ONNX Runtime's CUDA provider vs torch, one object, median ms."""
    import statistics

    import onnxruntime

    from unipixel_ros.decoders.onnx_export import export_decoder_onnx
    from unipixel_ros.decoders.ort_backend import OnnxRuntimeMaskDecoder
    from unipixel_ros.decoders.parity import random_inputs
    from unipixel_ros.decoders.torch_backend import TorchMaskDecoder

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return ("skipped: onnxruntime has no CUDAExecutionProvider here "
                f"({', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu")
    inputs = random_inputs(sam2, 1, seed=0, seed_frame=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decoder.onnx"
        export_decoder_onnx(sam2, path)
        backends = {"torch": TorchMaskDecoder(sam2),
                    "ort": OnnxRuntimeMaskDecoder(path, providers=["CUDAExecutionProvider"])}
        ms = {}
        for name, backend in backends.items():
            for _ in range(3):
                backend(inputs)
            times = []
            for _ in range(repeats):
                torch.cuda.synchronize()
                start = time.perf_counter()
                backend(inputs)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            ms[name] = 1000 * statistics.median(times)
    return f"{ms['ort']:.2f} ms vs torch {ms['torch']:.2f} ms = {ms['ort'] / ms['torch']:.2f} x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("3b", "7b"), default="3b")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--tokens", type=int, default=64, help="greedy tokens per decode timing")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU (aot_eager compile)")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device here: the GPU table is pending a GPU; running the --smoke pass instead")
        args.smoke = True
    rows: list[tuple[str, str]] = []
    if args.smoke:
        from unipixel_ros.model.tiny import TINY_FRAME_SIZE, build_tiny_unipixel

        torch.set_num_threads(1)
        device = torch.device("cpu")
        model, _ = build_tiny_unipixel()
        args.frames, args.height, args.width, args.tokens = 4, TINY_FRAME_SIZE, TINY_FRAME_SIZE, 4
        label, bandwidth_mib = "tiny (smoke)", 16
    else:
        device = torch.device("cuda")
        model = full_model(args.size, "cuda", torch.bfloat16)
        label, bandwidth_mib = f"UniPixel-{args.size.upper()} random bf16", 1024
    rows.append(("model", f"{label} on {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}"))
    inputs = window_inputs(model, args.frames, args.height, args.width)
    rows.append(("window", f"{args.frames} frames {args.width}x{args.height}, {inputs.input_ids.shape[1]} prompt tokens"))

    with torch.inference_mode():
        vision = timed(lambda: model.video_features(inputs.pixel_values_videos, inputs.video_grid_thw), device)
        prefill = timed(lambda: model._prefill(inputs), device)
    rows += [("vision encoder", f"{1000 * vision:.1f} ms"), ("prefill (vision + LLM)", f"{1000 * prefill:.1f} ms")]

    language = model.model.language_model
    weight_bytes = sum(p.numel() * p.element_size() for p in language.parameters())
    if model.lm_head.weight is not language.embed_tokens.weight:
        weight_bytes += model.lm_head.weight.numel() * model.lm_head.weight.element_size()
    bandwidth = copy_bandwidth(device, bandwidth_mib)
    floor_ms = 1000 * weight_bytes / bandwidth
    rows.append(("copy bandwidth", f"{bandwidth / 1e9:.1f} GB/s"))
    rows.append(("decode floor (weights / bandwidth)", f"{floor_ms:.3f} ms/token ({weight_bytes / 1e9:.2f} GB)"))
    if args.smoke:
        from unipixel_ros.model.static_decode import StaticDecoder

        compiled = StaticDecoder(model, compile_step=True, backend="aot_eager")
    else:
        compiled = "compiled"
    for name, decode in (("eager", "eager"), ("static", "static"), ("compiled", compiled)):
        ms = decode_ms_per_token(model, inputs, args.tokens, decode, device)
        rows.append((f"decode {name}", f"{ms:.3f} ms/token = {ms / floor_ms:.2f} x floor"))

    from unipixel_ros.model.sam2_engine import Sam2Engine

    engine = Sam2Engine(model.sam2)
    frames = list(np.random.default_rng(0).integers(0, 256, (args.frames, args.height, args.width, 3), np.uint8))
    counter = iter(range(10 ** 9))
    encode = timed(lambda: engine.features(frames, [next(counter) for _ in frames]), device) / len(frames)
    keys = list(range(-len(frames), 0))
    engine.features(frames, keys)
    tokens = torch.randn(1, model.config.sam2_hidden_tokens, model.sam2.hidden_dim, dtype=model.dtype)
    propagate = timed(lambda: engine.segment_seg_tokens_many(frames, keys, tokens.to(engine.device)), device)
    rows += [("SAM 2 encode", f"{1000 * encode:.2f} ms/frame"),
             ("<SEG> propagation", f"{1000 * propagate:.1f} ms/object over {len(frames)} frames")]
    first, second = first_and_second_query(model, engine, inputs, frames, args.tokens, device)
    rows.append(("query, first / second on the window", f"{first:.3f} s / {second:.3f} s "
                 f"({args.tokens} tokens and one <SEG>)"))
    counts = (1, 2) if args.smoke else (1, 5, 10)
    for count, (batched, single) in tracking_fps(engine, frames, counts, steps=2 if args.smoke else 4).items():
        rows.append((f"tracking {count} object{'s' if count > 1 else ''}",
                     f"{batched:.1f} fps batched, {single:.1f} fps per-object ({batched / single:.2f} x)"))
    rows.append(("SAM 2 in bf16", bf16_mask_agreement(engine, frames)))
    if device.type == "cuda":
        rows.append(("mask decoder, ONNX Runtime CUDA", onnx_decoder_ratio(model.sam2, repeats=20)))
        rows.append(("peak GPU memory", f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB"))

    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
