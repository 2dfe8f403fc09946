"""Long tracks by colour: ``python -m unipixel_ros.training.tracking_eval --model synthetic``.

The held-out clips are 4-8 frames; the node tracks an object for as long as it is kept.
Here every shape of each seeded stream is clicked on frame 0 (at its deepest pixel, the
point farthest from its outline) and tracked ``--frames`` frames on, as the node does it
(:meth:`UniPixelPipeline.segment_prompt`, then :meth:`UniPixelPipeline.track` frame by
frame). A shape is *held* when its mask keeps IoU >= 0.5 with the truth on every tracked
frame. The table is per true colour of the shape.

``--channels 2,1,0`` feeds the model the same frames with their colour channels in
another order (here red and blue exchanged): a loss that follows the colour the model
sees moves to the other colours, one that follows the scene (motion, neighbours) stays.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from unipixel_ros.mask_points import deepest_point
from unipixel_ros.memory import ObjectMemoryBank
from unipixel_ros.prompts import PointPrompt
from unipixel_ros.scoring import mask_iou
from unipixel_ros.synthetic.scenes import DEFAULT_HEIGHT, DEFAULT_WIDTH, PALETTE, SyntheticStream

HELD_IOU = 0.5
RGB = (0, 1, 2)


@dataclass(frozen=True)
class Track:
    """One clicked shape: IoU on the clicked frame, then on each tracked frame."""

    seed: int
    colour: str
    shape: str
    clicked_iou: float
    tracked_iou: tuple[float, ...]

    @property
    def held(self) -> bool:
        return all(iou >= HELD_IOU for iou in self.tracked_iou)

    @property
    def first_lost(self) -> int | None:
        """The first tracked frame (1-based) below the threshold; None when held."""
        return next((t for t, iou in enumerate(self.tracked_iou, 1) if iou < HELD_IOU), None)


def channel_order(text: str) -> tuple[int, int, int]:
    """``"2,1,0"`` -> (2, 1, 0): the input channel that feeds each of the model's R, G, B."""
    try:
        order = tuple(int(c) for c in text.split(","))
    except ValueError:
        order = ()
    if sorted(order) != [0, 1, 2]:
        raise argparse.ArgumentTypeError(f"channel order must be a permutation of 0,1,2, got {text!r}")
    return order  # type: ignore[return-value]


def track_stream(pipeline, seed: int, frames: int, channels: tuple[int, int, int] = RGB,
                 width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> list[Track]:
    """Click every shape visible on frame 0 of stream ``seed`` and track it ``frames`` frames,
    feeding the model each frame's channels in the order ``channels``."""
    stream = SyntheticStream(seed, width, height)
    rendered = [stream.frame(i) for i in range(frames + 1)]
    images = [f.image if channels == RGB else np.ascontiguousarray(f.image[..., list(channels)]) for f in rendered]
    scene, _ = stream.scene_at(0)
    tracks = []
    for k, obj in enumerate(scene.objects):
        truth = rendered[0].masks[k]
        if not truth.any():
            continue
        x, y = deepest_point(truth)
        clicked = pipeline.segment_prompt([images[0]], [0], PointPrompt(object_index=0, frame_index=0, x=float(x), y=float(y)))
        bank = ObjectMemoryBank()
        object_id = bank.add("click", [(0, clicked.masks[0], 1.0)])
        bank.attach_tracking(object_id, clicked.tracking)
        tracked = []
        for t in range(1, frames + 1):
            step = pipeline.track(bank, images[t], t)[object_id]
            tracked.append(mask_iou(step.mask, rendered[t].masks[k]))
        tracks.append(Track(seed, obj.colour, obj.shape, mask_iou(clicked.masks[0], truth), tuple(tracked)))
    return tracks


def by_colour(tracks: Iterable[Track]) -> dict[str, dict[str, float]]:
    """Per colour (palette order): shapes, mean clicked IoU, mean tracked IoU, shapes held."""
    groups: dict[str, list[Track]] = defaultdict(list)
    for track in tracks:
        groups[track.colour].append(track)
    return {colour: {"shapes": len(group),
                     "clicked_iou": float(np.mean([t.clicked_iou for t in group])),
                     "tracked_iou": float(np.mean([np.mean(t.tracked_iou) for t in group])),
                     "held": sum(t.held for t in group)}
            for colour in PALETTE if (group := groups.get(colour))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unipixel_ros.training.tracking_eval",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synthetic", help="checkpoint folder, 'synthetic' or 'tiny'")
    parser.add_argument("--seeds", type=int, default=12, help="streams 0..N-1")
    parser.add_argument("--frames", type=int, default=15, help="frames tracked after the click")
    parser.add_argument("--channels", type=channel_order, default=RGB,
                        help="order in which the frames' channels feed the model (default 0,1,2; 2,1,0 swaps red and blue)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from unipixel_ros.pipeline import build_pipeline

    torch.set_num_threads(args.threads)
    pipeline = build_pipeline(args.model, device="cpu", dtype="fp32", log=lambda message: None)
    tracks = [t for seed in tqdm(range(args.seeds), desc="streams", unit="stream")
              for t in track_stream(pipeline, seed, args.frames, args.channels)]
    print(f"{'colour':<8} {'shapes':>6} {'clicked IoU':>11} {'tracked IoU':>11} {'held':>5}")
    for colour, row in by_colour(tracks).items():
        print(f"{colour:<8} {row['shapes']:>6} {row['clicked_iou']:>11.2f} {row['tracked_iou']:>11.2f} {row['held']:>5}")
    lost = [t.first_lost for t in tracks if not t.held]
    print(f"held {sum(t.held for t in tracks)} of {len(tracks)}; of those lost, "
          f"{sum(f == 1 for f in lost)} on the first tracked frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
