"""Replay throughput: frames of a recording replayed per second while tracking 1 and 5 objects.

Records a synthetic bag, replays it with 1 or 5 clicks on the first frame (so that every later
frame is a tracking step of that many objects) and prints the replay's frames per second next
to the rate of the bare tracking steps on the same frames (``pipeline.track`` called as the
node's tracker calls it: the most a live node can track at), and their ratio.

    python bench/bench_replay.py [--frames 30] [--size 320x240] [--device auto] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unipixel_ros.memory import ObjectMemoryBank  # noqa: E402
from unipixel_ros.prompts import PointPrompt  # noqa: E402
from unipixel_ros.replay.__main__ import main as replay  # noqa: E402
from unipixel_ros.ros.model_host import ModelSettings, load_pipeline  # noqa: E402
from unipixel_ros.replay.record import record  # noqa: E402
from unipixel_ros.synthetic.scenes import SyntheticStream  # noqa: E402

SEED = 4


def track_rate(frames, centers, objects: int, device: str) -> float:
    """Frames per second of bare tracking steps of ``objects`` clicked objects."""
    pipeline = load_pipeline(ModelSettings("synthetic", device, "auto", "torch"), lambda _: None)
    bank = ObjectMemoryBank(32, 64)
    for k in range(objects):
        x, y = (float(v) for v in centers[k])
        obj = pipeline.segment_prompt([frames[0].image], [0], PointPrompt(object_index=0, frame_index=0, x=x, y=y))
        bank.attach_tracking(bank.add("click", [(0, obj.masks[0], float(obj.scores[0]))]), obj.tracking)
    began = time.perf_counter()
    for i, frame in enumerate(frames[1:], start=1):
        pipeline.track(bank, frame.image, i)
    return (len(frames) - 1) / (time.perf_counter() - began)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--size", default="320x240")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="smallest case: 6 frames of 160x120")
    args = p.parse_args()
    if args.smoke:
        args.frames, args.size = 6, "160x120"
    width, height = (int(v) for v in args.size.split("x"))
    stream = SyntheticStream(SEED, width, height, 5)
    frames = [stream.frame(i) for i in range(args.frames)]
    print(f"replay of {args.frames} synthetic frames {width}x{height}, model synthetic, device {args.device}")
    print(f"{'objects':>8} {'replay fps':>11} {'track fps':>10}  ratio")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        record(tmp / "in", args.frames / 10, "mcap", width=width, height=height, seed=SEED, num_objects=5)
        for objects in (1, 5):
            script = tmp / f"requests{objects}.yaml"
            script.write_text(yaml.safe_dump({"requests": [
                {"at": 0.0, "camera": "cam", "click": [float(v) for v in frames[0].centers[k]]}
                for k in range(objects)]}))
            out = tmp / f"out{objects}"
            status = replay([str(tmp / "in"), str(out), "--camera", "cam=/camera/image_raw", "--requests", str(script),
                             "-p", f"model.device={args.device}", "-p", "tracking.rate_hz=10.0", "--no-progress"])
            if status:
                raise SystemExit(status)
            replay_fps = json.loads(Path(f"{out}_summary.json").read_text())["frames_per_s"]
            bare = track_rate(frames, frames[0].centers, objects, args.device)
            print(f"{objects:>8} {replay_fps:>11.2f} {bare:>10.2f}  replay / track = {replay_fps / bare:.3f}")


if __name__ == "__main__":
    main()
