"""Runs the real UniPixel node with the pipeline double in place of the model.

    python test/helpers/perception_node.py [--fake-log PATH] [--token-delay S] [--track-delay S] --ros-args ...

Everything is as ``unipixel_node`` runs it (same node class, components, parameters,
lifecycle start and multi-threaded executor) except that the model-side component gets
:class:`helpers.fake_pipeline.FakePipeline` as its pipeline loader. The process stops
when its stdin closes, so a test run that dies leaves no node behind.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from functools import partial
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the test directory
from helpers.fake_pipeline import FakePipeline  # noqa: E402

from unipixel_ros.ros import node as node_module  # noqa: E402
from unipixel_ros.ros.perception import Perception  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fake-log", default=None, help="append every pipeline call here (JSON lines)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per generated token")
    parser.add_argument("--track-delay", type=float, default=0.0, help="seconds per tracking step")
    args, ros_argv = parser.parse_known_args()
    loader = partial(FakePipeline, log_path=args.fake_log, token_delay_s=args.token_delay,
                     track_delay_s=args.track_delay)
    components = [partial(Perception, loader=loader) if c is Perception else c for c in node_module.COMPONENTS]
    rclpy.init(args=[sys.argv[0], *ros_argv])
    node = node_module.UniPixelNode(components=components)
    executor = MultiThreadedExecutor(num_threads=node_module.EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        if not node_module.start(node):
            raise SystemExit(1)
        print("ready", flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), os.kill(os.getpid(), signal.SIGINT)),
                         daemon=True).start()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
