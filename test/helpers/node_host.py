"""Runs the real UniPixel node in its own process and, on request, writes its windows to a file.

    python test/helpers/node_host.py --ros-args -r __ns:=/x -p cameras:=[a] ...

The node is built, started and spun as ``unipixel_node`` does it, with camera ingest
as its only component (the input side's tests need no model). The only addition is
a line protocol on stdin, read on the main thread while the executor spins in
another:

    dump PATH   write every camera's window to PATH (.npz), answer "dumped PATH"
    quit        stop

Windows are read with ``FrameWindow.snapshot()`` from this foreign thread, as the
query side will. This keeps inspection out of the product: the node itself has no
debug service or topic.
"""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor

from unipixel_ros.ros.node import UniPixelNode, start
from unipixel_ros.ros.spinner import stop_spinning


def dump(node: UniPixelNode, path: str) -> None:
    meta, arrays = {}, {}
    for name, feed in node.feeds.items():
        frames = feed.window.snapshot()
        meta[name] = [{"stamp_ns": f.stamp_ns, "frame_id": f.frame_id,
                       "k": f.camera_info.k.tolist() if f.camera_info else None} for f in frames]
        arrays.update({f"{name}/{i}": f.image for i, f in enumerate(frames)})
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def main() -> None:
    rclpy.init(args=sys.argv)
    node = UniPixelNode(components=())
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    if not start(node):
        sys.exit(1)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "dump":
            dump(node, arg)
            print(f"dumped {arg}", flush=True)
        elif command == "quit":
            break
    stop_spinning(executor, spinner)
    node.release()
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
