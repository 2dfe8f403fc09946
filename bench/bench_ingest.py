"""Ingest cost of the UniPixel node vs a bare rclpy subscriber on the same camera stream.

    python bench/bench_ingest.py [--seconds 20] [--rate 15] [--sizes 640x480,1920x1080]
                                 [--encodings bgr8] [--rss-early 60] [--warmup 3] [--use-every 3]
    python bench/bench_ingest.py --smoke        # seconds: does it run (numbers meaningless)

For each (size, encoding) one publisher process streams frames; the node
(``python -m unipixel_ros.ros.node``, default parameters: sensor-data QoS, 10 s /
64 frame / 512 MiB window) and a bare subscriber (an empty callback under
``rclpy.spin``) receive the same stream at the same time. Both are separate
processes; their CPU time (user + system, from /proc) is sampled after a warm-up
and at the end, and divided by the frames each received in between (the node's
count comes from its /diagnostics, the bare subscriber prints its own).

QoS: reliable by default. With DDS restricted to the loopback interface
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) Fast DDS sends over UDP only, and a
best-effort frame larger than a few hundred kB is lost whenever one of its
fragments overflows the receive buffer, which here is nearly always at 640x480
and above; ``--qos sensor_data`` shows it. ``delivered`` is the share of all published
frames that reached each subscriber over the whole stream (warm-up included): what a
transport loses, as opposed to what the node drops (its /diagnostics say why).

``--use-every N`` (ingest-only node; default 3) has the node read the pixels of its newest
frame at a third of the camera rate, as a tracking step at ``tracking.rate_hz`` = rate / 3
does (0: never): compressed frames are decoded only when used, so this is what a JPEG
stream costs the node with tracking on. The model's own step is not included.

Printed ratios: node CPU per frame / bare CPU per frame, and the node's resident
memory at the end of the stream / after ``--rss-early`` seconds (clamped to a third
of the stream), which must stay near 1.0 once the window is full. ``n/a`` means the bare subscriber
used less than one clock tick of CPU (1/SC_CLK_TCK s) in the measured span: run longer.
Run a long stream with ``--seconds 600 --rss-early 60``.

``faults/f`` is minor page faults per frame. At 1080p the bare subscriber, which frees
every message at once, can re-fault its buffers on every frame (thousands of faults)
while the node's window keeps that memory in use, so short runs may show the node
cheaper than the baseline; compare ms/frame together with this column.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMOKE = dict(seconds=3.0, rate=10.0, sizes="64x48", encodings="bgr8", rss_early=1.0, warmup=1.0)
NAMESPACE = "/bench"
CAMERA = "cam"
TOPIC = f"{NAMESPACE}/{CAMERA}/image_raw"


def cpu_and_faults(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and minor page faults of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[7])


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` in a 9-wide column; ``n/a`` when the baseline spent less CPU
    than one /proc clock tick over the measured span (short runs on a fast machine)."""
    return f"{numerator / denominator:>9.2f}" if denominator > 0 else f"{'n/a':>9}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- roles run as child processes ------------------------------------------------------------

def qos(name: str):
    from unipixel_ros.ros.qos import qos_profile

    return qos_profile(name, 5)


def run_publisher(width: int, height: int, encoding: str, rate: float, seconds: float,
                  subscribers: int, qos_name: str) -> None:
    import cv2
    import numpy as np
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    if encoding == "jpeg":
        pub = node.create_publisher(CompressedImage, f"{TOPIC}/compressed", qos(qos_name))
        msgs = [CompressedImage(format="jpeg", data=cv2.imencode(".jpg", im)[1].tobytes()) for im in images]
    else:
        pub = node.create_publisher(Image, TOPIC, qos(qos_name))
        msgs = [Image(height=height, width=width, encoding=encoding, step=width * 3, data=im.tobytes())
                for im in images]
    while pub.get_subscription_count() < subscribers:     # the node and the bare subscriber
        time.sleep(0.05)
    time.sleep(0.5)
    start, i = time.monotonic(), 0
    while (now := time.monotonic()) < start + seconds:
        msg = msgs[i % len(msgs)]
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = CAMERA
        pub.publish(msg)
        i += 1
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
    print(f"published {i}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def run_ingest_node(ros_args: list[str], use_hz: float) -> None:
    """The node as ``unipixel_node`` runs it, with camera ingest as its only component; at
    ``use_hz`` (> 0) a timer reads the newest frame's pixels, as a tracking step does."""
    import rclpy
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from unipixel_ros.ros.node import UniPixelNode, start

    rclpy.init(args=["bench", *ros_args])
    node = UniPixelNode(components=())
    executor = MultiThreadedExecutor()
    executor.add_node(node)

    def use_newest() -> None:
        for feed in node.feeds.values():
            frame = feed.window.latest()
            if frame is not None:
                frame.image

    try:
        if start(node):
            if use_hz > 0:
                node.create_timer(1.0 / use_hz, use_newest, callback_group=MutuallyExclusiveCallbackGroup())
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def run_bare(encoding: str, qos_name: str) -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("bench_bare_subscriber")
    count = 0

    def on_frame(msg) -> None:
        nonlocal count
        count += 1

    if encoding == "jpeg":
        node.create_subscription(CompressedImage, f"{TOPIC}/compressed", on_frame, qos(qos_name))
    else:
        node.create_subscription(Image, TOPIC, on_frame, qos(qos_name))
    node.create_timer(0.25, lambda: print(f"count {count}", flush=True))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


# -- harness ---------------------------------------------------------------------------------

class LatestLine:
    """Keeps the newest ``<key> N`` a child prints (``count`` from the bare subscriber,
    ``published`` from the publisher at its end)."""

    def __init__(self, proc: subprocess.Popen, key: str = "count") -> None:
        self.value = 0
        self._key = key + " "
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith(self._key):
                self.value = int(line.split()[1])


class NodeCounter:
    """The node's ``received`` counter, read from /diagnostics like any monitor would."""

    def __init__(self) -> None:
        import rclpy
        import rclpy.executors
        from diagnostic_msgs.msg import DiagnosticArray

        self.value = 0
        self.bytes_held = 0
        self._rclpy = rclpy
        rclpy.init()
        self._node = rclpy.create_node("bench_monitor")
        self._node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self._executor = rclpy.executors.SingleThreadedExecutor()
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == f"{NAMESPACE}/unipixel: camera {CAMERA}":
                values = {kv.key: kv.value for kv in status.values}
                self.value = int(values["received"])
                self.bytes_held = int(values["bytes_held"])

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join()
        self._node.destroy_node()
        self._rclpy.try_shutdown()


@dataclass
class Sample:
    t: float
    node_cpu: tuple[float, int]
    bare_cpu: tuple[float, int]
    node_frames: int
    bare_frames: int


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def run_case(width: int, height: int, encoding: str, args: argparse.Namespace, counter: NodeCounter) -> dict:
    transport = "compressed" if encoding == "jpeg" else "raw"
    counter.value = counter.bytes_held = 0
    ros_args = ["--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"cameras:=[{CAMERA}]",
                "-p", f"cameras.{CAMERA}.transport:={transport}", "-p", "diagnostics.period_s:=0.25",
                "-p", f"qos.input:={args.qos}"]
    if args.node == "full":
        node = spawn(["-m", "unipixel_ros.ros.node", *ros_args])
    else:
        use_hz = args.rate / args.use_every if args.use_every else 0.0
        node = spawn([__file__, "--role", "node", "--use-hz", str(use_hz), *ros_args])
    bare = spawn([__file__, "--role", "bare", "--encodings", encoding, "--qos", args.qos])
    bare_count = LatestLine(bare)
    publisher = spawn([__file__, "--role", "publish", "--sizes", f"{width}x{height}",
                       "--encodings", encoding, "--rate", str(args.rate), "--seconds", str(args.seconds),
                       "--qos", args.publisher_qos or args.qos])
    published = LatestLine(publisher, "published")
    try:
        def sample() -> Sample:
            return Sample(time.monotonic(), cpu_and_faults(node.pid), cpu_and_faults(bare.pid),
                          counter.value, bare_count.value)

        while min(counter.value, bare_count.value) == 0:
            if publisher.poll() is not None:
                raise RuntimeError("the publisher ended before any frame arrived")
            time.sleep(0.05)
        time.sleep(args.warmup)
        first = sample()
        early_at = first.t + min(args.rss_early, args.seconds / 3) - args.warmup
        time.sleep(max(0.0, early_at - time.monotonic()))
        rss_early = rss_mib(node.pid)
        publisher.wait()
        time.sleep(1.0)                                       # let the last reports arrive
        last = sample()
        delivered = (counter.value / max(published.value, 1), bare_count.value / max(published.value, 1))
        rss_end, bare_rss = rss_mib(node.pid), rss_mib(bare.pid)
    finally:
        for proc in (publisher, node, bare):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(20)
    node_frames, bare_frames = last.node_frames - first.node_frames, last.bare_frames - first.bare_frames
    per_frame = [(b - a) / max(n, 1) for first_cpu, last_cpu, n in
                 ((first.node_cpu, last.node_cpu, node_frames), (first.bare_cpu, last.bare_cpu, bare_frames))
                 for a, b in zip(first_cpu, last_cpu)]
    return dict(size=f"{width}x{height}", encoding=encoding, node_frames=node_frames,
                bare_frames=bare_frames, node_ms=1e3 * per_frame[0], node_faults=per_frame[1],
                bare_ms=1e3 * per_frame[2], bare_faults=per_frame[3], rss_early=rss_early,
                rss_end=rss_end, bare_rss=bare_rss, window_mib=counter.bytes_held / 2**20,
                published=published.value, delivered=delivered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="stream duration per case [s]")
    parser.add_argument("--rate", type=float, default=15.0, help="frames per second")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--encodings", default="bgr8", help="comma list of rgb8, bgr8, jpeg")
    parser.add_argument("--qos", default="reliable",
                        help="QoS profile name for publisher and both subscribers (see below)")
    parser.add_argument("--publisher-qos", default="",
                        help="QoS profile of the camera publisher (default: --qos); e.g. --qos best_available "
                        "--publisher-qos reliable, as most drivers publish")
    parser.add_argument("--rss-early", type=float, default=60.0,
                        help="when to take the early RSS sample [s]; clamped to a third of the stream")
    parser.add_argument("--node", choices=["ingest", "full"], default="ingest",
                        help="ingest: the node with camera ingest only; full: unipixel_node as installed, "
                        "with every component (model loaded, tracking running)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of the stream, after the first frames arrive, left out of the counts")
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    parser.add_argument("--use-every", type=int, default=3,
                        help="ingest node: read the newest frame's pixels at rate / N, as tracking at "
                        "tracking.rate_hz = rate / N does (0 = never)")
    parser.add_argument("--role", choices=["publish", "bare", "node"], help=argparse.SUPPRESS)
    parser.add_argument("--use-hz", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--subscribers", type=int, default=2, help=argparse.SUPPRESS)
    args, ros_args = parser.parse_known_args()
    if args.smoke:
        vars(args).update(SMOKE)
    if args.role == "node":
        run_ingest_node(ros_args, args.use_hz)
        return
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    encodings = args.encodings.split(",")

    # DDS stays on this machine, in a domain of its own, unless the caller chose otherwise.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    if args.role == "publish":
        run_publisher(*sizes[0], encodings[0], args.rate, args.seconds, args.subscribers, args.qos)
        return
    if args.role == "bare":
        run_bare(encodings[0], args.qos)
        return
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds (the counts start after it)")

    counter = NodeCounter()
    uses = f", newest frame used every {args.use_every} frames" if args.node == "ingest" and args.use_every else ""
    print(f"node: {args.node}{uses}; stream {args.seconds:.0f} s at {args.rate:g} Hz per case, QoS {args.qos} "
          f"(publisher {args.publisher_qos or args.qos}); CPU = user + "
          f"system time per frame received; warm-up {args.warmup:g} s excluded")
    header = (f"{'size':>10} {'enc':>5} {'frames node/bare':>17} {'bare ms/f':>9} {'node ms/f':>9} "
              f"{'node/bare':>9} {'faults/f bare/node':>18} {'RSS early':>9} {'RSS end':>8} "
              f"{'end/early':>9} {'window':>8} {'delivered node/bare':>19}")
    print(header)
    try:
        for width, height in sizes:
            for encoding in encodings:
                r = run_case(width, height, encoding, args, counter)
                print(f"{r['size']:>10} {r['encoding']:>5} {r['node_frames']:>8}/{r['bare_frames']:<8} "
                      f"{r['bare_ms']:>9.3f} {r['node_ms']:>9.3f} {ratio(r['node_ms'], r['bare_ms'])} "
                      f"{r['bare_faults']:>9.0f}/{r['node_faults']:<8.0f} "
                      f"{r['rss_early']:>8.0f}M {r['rss_end']:>7.0f}M {r['rss_end'] / r['rss_early']:>9.3f} "
                      f"{r['window_mib']:>7.0f}M {100 * r['delivered'][0]:>8.0f}%/{100 * r['delivered'][1]:<.0f}%"
                      f" of {r['published']}", flush=True)
    finally:
        counter.close()


if __name__ == "__main__":
    main()
