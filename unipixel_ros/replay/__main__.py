"""``python -m unipixel_ros.replay`` / ``unipixel_replay``: replay a recording through the node's code.

    unipixel_replay IN_BAG OUT_BAG --camera front=/front/image_raw \\
        [--camera-info front=/front/camera_info] [--depth front=/front/depth/image_raw] \\
        [--depth-info front=/front/depth/camera_info] [--params config/unipixel.yaml] \\
        [--requests requests.yaml] [-p model.device=cpu] [--start S] [--end S] [--storage mcap]

Exit status 0 on success; 2 with a message naming the problem (a missing topic, a wrong
message type, a bag it cannot read, a bad parameter or request); 130 when interrupted. The
output bag appears only when the whole replay succeeded; otherwise the partial one is
removed, and the message says so.
"""
from __future__ import annotations

if __name__ == "__main__":   # a Ctrl-C while importing the model stack exits quietly
    from unipixel_ros.ros.process import exit_on_stop_signal

    exit_on_stop_signal()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402

from unipixel_ros.frames import NS_PER_S  # noqa: E402
from unipixel_ros.replay.config import NODE_NAME, CameraTopics, read_config  # noqa: E402
from unipixel_ros.replay.errors import ReplayError  # noqa: E402
from unipixel_ros.replay.reading import CAMERA_INFO, IMAGE, TRANSPORTS, Recording  # noqa: E402
from unipixel_ros.replay.script import Script, load_script  # noqa: E402
from unipixel_ros.replay.writing import STORAGES, OutputBag  # noqa: E402

PROG = "unipixel_replay"


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ReplayError(f"{flag} takes NAME=VALUE, got {value!r}")
        if name in out:
            raise ReplayError(f"{flag} {name} is given twice")
        out[name] = rest
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Replay a rosbag2 recording (MCAP or sqlite3) through "
                                "the UniPixel node's windows, queries, clicks and tracking; write a bag with "
                                "its outputs and a JSON/CSV summary.")
    p.add_argument("input", type=Path, help="input bag (directory or .mcap / .db3 file)")
    p.add_argument("output", type=Path, help="output bag directory (must not exist)")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=TOPIC", required=True,
                   help="a camera and its recorded sensor_msgs/Image or CompressedImage topic (repeatable)")
    p.add_argument("--camera-info", action="append", default=[], metavar="NAME=TOPIC",
                   help="a camera's recorded sensor_msgs/CameraInfo topic (optional, repeatable)")
    p.add_argument("--depth", action="append", default=[], metavar="NAME=TOPIC",
                   help="a camera's recorded depth sensor_msgs/Image, registered to its colour image (16UC1 mm or "
                   "32FC1 m): objects get their 3-D, markers and points (optional, repeatable)")
    p.add_argument("--depth-info", action="append", default=[], metavar="NAME=TOPIC",
                   help="the CameraInfo of a camera's depth image, where its size differs from the colour one's "
                   "(optional, repeatable)")
    p.add_argument("--params", type=Path, default=None, help="the node's parameter file (config/unipixel.yaml "
                   "format: windows, query, memory, tracking, clicks, model); default: the node's defaults")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override one node parameter, e.g. -p model.device=cpu (value read as YAML)")
    p.add_argument("--requests", type=Path, default=None, help="request script (YAML, see unipixel_ros.replay.script)")
    p.add_argument("--start", type=float, default=None, help="replay from this many seconds after the bag's start")
    p.add_argument("--end", type=float, default=None, help="replay up to this many seconds after the bag's start")
    p.add_argument("--storage", choices=tuple(STORAGES), default="mcap", help="output storage (default mcap)")
    p.add_argument("--summary", type=Path, default=None,
                   help="summary path without suffix (default <output>_summary): writes .json and .csv")
    p.add_argument("--node-name", default=NODE_NAME, help="node name the output topics are under (default unipixel)")
    p.add_argument("--namespace", default="/", help="node namespace (default /)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _window(recording: Recording, start: float | None, end: float | None) -> tuple[int, int]:
    first, last = recording.start_ns, recording.end_ns
    lo = first if start is None else first + int(round(start * NS_PER_S))
    hi = last if end is None else first + int(round(end * NS_PER_S))
    if not first <= lo <= hi <= last:
        raise ReplayError(f"--start/--end select {(lo - first) / NS_PER_S:g} to {(hi - first) / NS_PER_S:g} s, "
                          f"outside the bag's 0 to {(last - first) / NS_PER_S:g} s (or empty)")
    return lo, hi


def _cameras(args: argparse.Namespace, recording: Recording) -> dict[str, Any]:
    from unipixel_ros.replay.running import CameraInput  # noqa: PLC0415

    images = _pairs(args.camera, "--camera")
    extra = {flag: _pairs(values, flag) for flag, values in (("--camera-info", args.camera_info),
                                                             ("--depth", args.depth), ("--depth-info", args.depth_info))}
    for flag, given in extra.items():
        for name in given:
            if name not in images:
                raise ReplayError(f"{flag} {name}: no --camera {name}=TOPIC is given")
    for name in extra["--depth-info"]:
        if name not in extra["--depth"]:
            raise ReplayError(f"--depth-info {name}: no --depth {name}=TOPIC is given")
    cameras = {}
    for name, topic in images.items():
        msgtype = recording.require(topic, TRANSPORTS, f"--camera {name}")
        topics = {flag: given.get(name, "") for flag, given in extra.items()}
        for flag, allowed in (("--camera-info", CAMERA_INFO), ("--depth", IMAGE), ("--depth-info", CAMERA_INFO)):
            if topics[flag]:
                recording.require(topics[flag], (allowed,), f"{flag} {name}")
        cameras[name] = CameraInput(name, topic, msgtype, topics["--camera-info"], topics["--depth"],
                                    topics["--depth-info"])
    return cameras


def _requests(script: Script, recording: Recording, cameras: dict[str, Any], lo: int, hi: int) -> list:
    """(log time, request) of every request, checked against the bag and the replayed range."""
    first = recording.first_times([c.topic for c in cameras.values()], lo, hi)
    bag0 = recording.start_ns
    out = []
    for request in script.requests:
        if request.camera not in cameras:
            raise ReplayError(f"{request.name}: camera '{request.camera}' is not replayed "
                              f"(--camera gives {', '.join(cameras)})")
        at = request.time_ns(bag0)
        if not lo <= at <= hi:
            raise ReplayError(f"{request.name} is at {(at - bag0) / NS_PER_S:g} s, outside the replayed part "
                              f"of the bag ({(lo - bag0) / NS_PER_S:g} to {(hi - bag0) / NS_PER_S:g} s)")
        topic = cameras[request.camera].topic
        if topic not in first or first[topic] > at:
            since = (f"its first frame is at {(first[topic] - bag0) / NS_PER_S:g} s" if topic in first
                     else "it has no frame in the replayed part")
            raise ReplayError(f"{request.name}: camera '{request.camera}' has no frame on {topic} at or before "
                              f"{(at - bag0) / NS_PER_S:g} s ({since})")
        out.append((at, request))
    return out


def run(args: argparse.Namespace, loader: Any = None) -> dict[str, Any]:
    """The replay as the program runs it; returns the summary. Raises ReplayError.

    ``loader`` builds the pipeline (default: the node's, ``model_host.load_pipeline``)."""
    from unipixel_ros.replay.running import Replay  # noqa: PLC0415 - imports the model stack's host
    from unipixel_ros.ros.model_host import load_pipeline  # noqa: PLC0415
    from unipixel_ros.replay.summary import build_summary, write_summary  # noqa: PLC0415

    script = load_script(args.requests) if args.requests else Script(())
    overrides = {}
    for name, text in _pairs(args.param, "--param").items():
        overrides[name] = yaml.safe_load(text)
    with Recording(args.input) as recording:
        bag_start = recording.start_ns
        lo, hi = _window(recording, args.start, args.end)
        cameras = _cameras(args, recording)
        if script.ground_truth_topic:
            recording.require(script.ground_truth_topic, (IMAGE,), "ground_truth_topic of the request script")
        requests = _requests(script, recording, cameras, lo, hi)
        config = read_config(args.params, {n: CameraTopics(c.topic, TRANSPORTS[c.msgtype], c.info_topic,
                                                           c.depth_topic, c.depth_info_topic)
                                           for n, c in cameras.items()},
                             args.node_name, args.namespace, overrides)
        out = OutputBag(args.output, args.storage)
        try:
            replay = Replay(config, cameras, script, out, loader or load_pipeline)
            load_s = replay.load_model()
            total = sum(c.msgcount for t in replay.topics() for c in recording.connections(t))
            began = time.perf_counter()
            with _progress(total, args.no_progress) as bar:
                replay.run(recording, requests, lo, hi, progress=lambda _: bar.update(1))
            seconds = time.perf_counter() - began
            path = out.finish()
        except BaseException:
            removed = out.abort()
            print(f"{PROG}: removed the partial output bag {removed}; no output written", file=sys.stderr)
            raise
    meta = {"input": str(args.input), "output": str(path), "storage": args.storage,
            "params": str(args.params) if args.params else None, "model": config.perception.model.model_id,
            "cameras": {n: {"topic": c.topic, "type": c.msgtype, "camera_info": c.info_topic,
                            "depth": c.depth_topic, "depth_info": c.depth_info_topic} for n, c in cameras.items()},
            "bag_start_ns": bag_start, "replayed_ns": [lo, hi], "frames": replay.frames,
            "camera_counters": replay.camera_counters(), "depth": replay.depth_summary(),
            "messages_written": out.counts, "model_load_s": load_s, "replay_s": seconds,
            "frames_per_s": replay.frames / seconds if seconds > 0 else None, "tracking_s": replay.track_seconds}
    summary = build_summary(meta, replay.results, replay.tracked_summary(), bag_start)
    base = args.summary or args.output.with_name(args.output.name + "_summary")
    write_summary(summary, base.with_suffix(".json"), base.with_suffix(".csv"))
    summary["summary_files"] = [str(base.with_suffix(".json")), str(base.with_suffix(".csv"))]
    return summary


class _progress:
    """A tqdm bar over the recorded messages (silent with --no-progress)."""

    def __init__(self, total: int, off: bool) -> None:
        from tqdm import tqdm  # noqa: PLC0415

        self._bar = tqdm(total=total, unit="msg", desc="replay", disable=off, file=sys.stderr)

    def __enter__(self):
        return self._bar

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def main(argv: list[str] | None = None, loader: Any = None) -> int:
    """The program; its exit status. ``loader``: see :func:`run`."""
    try:
        args = parse_args(argv)
        summary = run(args, loader)
    except ReplayError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    failed = sum(not r["success"] for r in summary["requests"])
    print(f"{PROG}: wrote {summary['output']} ({summary['frames']} frames at {summary['frames_per_s'] or 0:.1f} "
          f"frames/s; {len(summary['requests'])} requests, {failed} refused) and "
          f"{', '.join(summary['summary_files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
