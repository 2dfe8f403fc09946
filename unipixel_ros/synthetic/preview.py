"""A picture of synthetic clips with their ground-truth mask outlines, to check them by eye.

Run ``python -m unipixel_ros.synthetic.preview OUT.png [--seed N]``: each row is one
random clip, each object's visible-mask outline is drawn in white with its index.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from .scenes import Video, random_video


def outline_frame(video: Video, t: int) -> np.ndarray:
    """RGB copy of frame ``t`` with every object's mask outline and index drawn on it."""
    canvas = video.images[t].copy()
    for k in range(video.num_objects):
        mask = video.masks[k, t].astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, (255, 255, 255), 1)
        if contours:
            x0, y0 = video.boxes[k, t, :2]
            cv2.putText(canvas, str(k), (int(x0), int(y0) + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    return canvas


def preview_grid(videos: list[Video], frames_per_row: int = 4) -> np.ndarray:
    """One row per clip (its first ``frames_per_row`` frames), black where a clip is shorter."""
    height, width = videos[0].images.shape[1:3]
    grid = np.zeros((len(videos) * (height + 2), frames_per_row * (width + 2), 3), dtype=np.uint8)
    for row, video in enumerate(videos):
        for col in range(min(frames_per_row, video.num_frames)):
            y, x = row * (height + 2), col * (width + 2)
            grid[y : y + height, x : x + width] = outline_frame(video, col)
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=4)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    videos = [random_video(rng, num_frames=4, occlusion=bool(row % 2)) for row in range(args.rows)]
    cv2.imwrite(args.output, cv2.cvtColor(preview_grid(videos), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
