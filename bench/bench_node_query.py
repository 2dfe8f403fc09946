"""Query latency, tracking throughput and memory of the UniPixel node, measured over ROS.

    python bench/bench_node_query.py [--model tiny] [--device auto] [--size 640x480] [--rate 15]
                                     [--queries 5] [--frames 16] [--track-seconds 15] [--duration 60]
    python bench/bench_node_query.py --smoke    # does it run (numbers meaningless)

One synthetic camera process and one node process (``python -m unipixel_ros.ros.node``,
the real pipeline) on loopback-only DDS, in a random ROS domain unless ``ROS_DOMAIN_ID``
is set; this process is the client.

1. Query latency: ``--queries`` service calls ("Please segment the <shape>.", the newest
   ``--frames`` frames). The client's round trip is split into the node's own stages:
   ``select_frames`` (window selection and prompt matching), ``build_response``
   (masks to mono8 messages, boxes), ``pipeline`` (the model), and the rest (DDS transport
   of request and response, serialisation, executor scheduling). Printed: each stage's
   median and the ratio ROS overhead / pipeline time.
2. Tracking throughput: a query with 1, then 5 point prompts keeps 1 / 5 objects; the node
   tracks them at ``tracking.rate_hz = 100`` (as fast as it can) for ``--track-seconds``, or
   longer until it has tracked ``MIN_FRAMES`` frames.
   Printed: tracked frames/s, object-frames/s and per-object step time, and the
   5-object / 1-object ratios.
3. Memory: with 5 objects tracked, the node's RSS is sampled every second for
   ``--duration`` seconds. Printed: RSS after the first quarter, at the end, the
   maximum, and end / first-quarter (flat = about 1.0).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "/bench"
CAMERA = "camera"
MIN_FRAMES = 3          # tracked frames a throughput figure counts at least (a loaded machine steps slowly)
SMOKE = dict(model="tiny", size="64x48", rate=5.0, queries=1, frames=2, track_seconds=2.0, duration=2.0)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rate", type=float, default=15.0, help="camera frames per second")
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--frames", type=int, default=16, help="frames per query")
    parser.add_argument("--track-seconds", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=60.0, help="RSS sampling with 5 tracked objects [s]")
    parser.add_argument("--logs", default="/tmp/bench_node_query")
    parser.add_argument("--smoke", action="store_true",
                        help="smallest run, to check that it works (numbers meaningless): "
                        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    width, height = (int(v) for v in args.size.split("x"))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import QoSProfile

    from unipixel_ros.msg import ObjectMasksArray, VisualPrompt
    from unipixel_ros.ros.spinner import stop_spinning
    from unipixel_ros.srv import Query, RemoveObjects, ResetMemory

    camera = start(["-m", "unipixel_ros.ros.synthetic_camera", "--ros-args", "-r", f"__ns:={NAMESPACE}/{CAMERA}",
                    "-p", f"width:={width}", "-p", f"height:={height}", "-p", f"rate:={args.rate}",
                    "-p", "num_objects:=5", "-p", "frame_id:=camera_optical"], logs / "camera.log")
    # Reliable input: best-effort frames of this size are lost on loopback UDP (see bench_ingest.py).
    node_params = {"cameras": f"[{CAMERA}]", "qos.input": "reliable", "model.id": args.model,
                   "model.device": args.device, "tracking.rate_hz": 100.0, "query.max_frames": args.frames,
                   "query.window_seconds": 10.0, "diagnostics.period_s": 0.5, "memory.max_frames_per_object": 64}
    node = start(["-m", "unipixel_ros.ros.node", "--ros-args", "-r", f"__ns:={NAMESPACE}",
                  *(a for k, v in node_params.items() for a in ("-p", f"{k}:={v}"))], logs / "node.log")

    context = rclpy.Context()
    rclpy.init(args=["bench"], context=context)
    client = rclpy.create_node("bench_client", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    lock = threading.Lock()
    tracked: list[tuple[float, int, int]] = []            # (arrival, stamp, objects)
    diagnostics: dict[str, dict[str, str]] = {}

    def on_tracked(msg) -> None:
        with lock:
            tracked.append((time.monotonic(), msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                            len(msg.objects)))

    def on_diagnostics(msg) -> None:
        with lock:
            for status in msg.status:
                diagnostics[status.name.partition(": ")[2]] = {kv.key: kv.value for kv in status.values}
    client.create_subscription(ObjectMasksArray, f"{NAMESPACE}/unipixel/tracked_objects", on_tracked,
                               QoSProfile(depth=100))
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, QoSProfile(depth=50))
    query_client = client.create_client(Query, f"{NAMESPACE}/unipixel/query")
    reset_client = client.create_client(ResetMemory, f"{NAMESPACE}/unipixel/reset_memory")
    remove_client = client.create_client(RemoveObjects, f"{NAMESPACE}/unipixel/remove_objects")

    def call(service, request, timeout: float = 900.0):
        future = service.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if node.poll() is not None:
                raise SystemExit(f"the node exited; see {logs / 'node.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"no reply within {timeout} s")
            time.sleep(0.01)
        return future.result()

    def diagnostic(status: str, key: str) -> str:
        with lock:
            return diagnostics.get(status, {}).get(key, "")

    try:
        deadline = time.monotonic() + 120
        while not query_client.wait_for_service(timeout_sec=0.5) or \
                int(diagnostic(f"camera {CAMERA}", "frames_held") or 0) < args.frames:
            if time.monotonic() > deadline:
                raise SystemExit(f"the node did not get ready; see {logs / 'node.log'}")
        print(f"node ready: {width}x{height} at {args.rate:g} Hz, model {args.model}, {args.frames} frames per query")

        # 1. query latency
        question = Query.Request(camera=CAMERA, text="Please segment the red circle.", max_frames=args.frames)
        call(query_client, question)                        # warm-up: model load, first-use costs
        stages: dict[str, list[float]] = {}
        for _ in range(args.queries):
            began = time.perf_counter()
            reply = call(query_client, question)
            round_trip = time.perf_counter() - began
            if not reply.success:
                raise SystemExit(f"query failed: {reply.message}")
            timings = {t.stage: t.seconds for t in reply.timings}
            for stage in ("select_frames", "wait_for_model", "pipeline", "build_response"):
                stages.setdefault(stage, []).append(timings.get(stage, 0.0))
            stages.setdefault("transport_and_scheduling", []).append(round_trip - timings["total"])
            stages.setdefault("round_trip", []).append(round_trip)
        median = {stage: statistics.median(values) for stage, values in stages.items()}
        overhead = median["select_frames"] + median["build_response"] + median["transport_and_scheduling"]
        print("\nquery latency (median of %d)" % args.queries)
        for stage, value in median.items():
            print(f"  {stage:26s} {value * 1000:10.2f} ms")
        print(f"  ROS overhead / pipeline time = {overhead * 1000:.2f} ms / {median['pipeline'] * 1000:.2f} ms"
              f" = {overhead / median['pipeline']:.4f}")

        # 2. tracking throughput
        rates = {}
        for count in (1, 5):
            call(reset_client, ResetMemory.Request())
            prompts = [VisualPrompt(type=VisualPrompt.POINT, object_index=k, x0=float((k + 1) * width // 6),
                                    y0=float(height // 2)) for k in range(count)]
            text = " ".join(f"[{k}]" for k in range(count))
            kept = call(query_client, Query.Request(camera=CAMERA, text=text, prompts=prompts, max_frames=2,
                                                    remember=True))
            if not kept.success or len(kept.objects) < count:
                raise SystemExit(f"could not keep {count} objects: {kept.message or len(kept.objects)}")
            extra = sorted(o.id for o in kept.objects)[count:]      # the answer may segment more
            if extra:
                call(remove_client, RemoveObjects.Request(ids=extra))
            deadline = time.monotonic() + 120.0              # the first step may load and compile kernels
            while True:
                with lock:
                    if any(t[2] == count for t in tracked[-5:]):
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"no tracked frame with {count} objects within 120 s")
                time.sleep(0.05)
            time.sleep(2.0)                                  # the first steps build the trackers' memory
            with lock:
                since = len(tracked)
            began = time.monotonic()
            while True:                                      # at least --track-seconds and MIN_FRAMES frames
                time.sleep(0.1)
                with lock:
                    stamps = {stamp for _, stamp, n in tracked[since:] if n == count}
                elapsed = time.monotonic() - began
                if elapsed >= args.track_seconds and len(stamps) >= MIN_FRAMES:
                    break
                if elapsed > args.track_seconds + 120.0:
                    raise SystemExit(f"{len(stamps)} tracked frame(s) with {count} objects in {elapsed:.0f} s; "
                                     f"see {logs / 'node.log'}")
            fps = len(stamps) / elapsed
            step = float(diagnostic(f"tracking {CAMERA}", "step_seconds") or "nan")
            rates[count] = fps
            print(f"\ntracking {count} object(s): {fps:.2f} frames/s, {fps * count:.2f} object-frames/s, "
                  f"last step {step * 1000:.1f} ms ({step * 1000 / count:.1f} ms per object)")
        print(f"  frames/s 5 objects / 1 object = {rates[5] / rates[1]:.3f}; "
              f"object-frames/s 5 / 1 = {5 * rates[5] / rates[1]:.3f}")

        # 3. memory over a long stream with 5 objects tracked
        samples = []
        began = time.monotonic()
        while time.monotonic() - began < args.duration:
            samples.append(rss_mib(node.pid))
            time.sleep(1.0)
        early = samples[max(0, len(samples) // 4 - 1)]
        print(f"\nnode RSS with 5 tracked objects over {args.duration:g} s: after a quarter {early:.0f} MiB, "
              f"end {samples[-1]:.0f} MiB, max {max(samples):.0f} MiB; end / quarter = {samples[-1] / early:.3f}")
    finally:
        stop_spinning(executor, spinner)
        client.destroy_node()
        rclpy.try_shutdown(context=context)
        stop(node)
        stop(camera)


if __name__ == "__main__":
    main()
