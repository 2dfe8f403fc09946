"""Runs the real UniPixel node with the pipeline double in place of the model.

    python test/helpers/perception_node.py [--fake-log PATH] [--token-delay S] [--track-delay S]
        [--load-delay S] [--switch-interval S] --ros-args ...

Everything is as ``unipixel_node`` runs it (:func:`unipixel_ros.ros.node.run`: same node
class, components, parameters, lifecycle start, executor, signal handling and stop)
except that the model-side component gets :class:`helpers.fake_pipeline.FakePipeline`
as its pipeline loader, and ``--switch-interval`` sets how often Python switches threads
(a small one makes races between threads show up sooner). It prints ``ready`` once the node spins. The process stops
(as on SIGINT) when its stdin closes, so a test run that dies leaves no node behind.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the test directory
from helpers.fake_pipeline import FakePipeline  # noqa: E402

from unipixel_ros.ros import node as node_module  # noqa: E402
from unipixel_ros.ros.perception import Perception  # noqa: E402
from unipixel_ros.ros.process import exit_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fake-log", default=None, help="append every pipeline call here (JSON lines)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per generated token")
    parser.add_argument("--track-delay", type=float, default=0.0, help="seconds per tracking step")
    parser.add_argument("--load-delay", type=float, default=0.0, help="seconds the pipeline takes to load")
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval [s]")
    args, ros_argv = parser.parse_known_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    loader = partial(FakePipeline, log_path=args.fake_log, token_delay_s=args.token_delay,
                     track_delay_s=args.track_delay, load_delay_s=args.load_delay)
    components = [partial(Perception, loader=loader) if c is Perception else c for c in node_module.COMPONENTS]

    def started() -> None:
        print("ready", flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), os.kill(os.getpid(), signal.SIGINT)),
                         daemon=True).start()

    exit_process(node_module.run([sys.argv[0], *ros_argv], components=components, started=started))


if __name__ == "__main__":
    main()
