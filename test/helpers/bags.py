"""Reading a whole rosbag2 (what a replay wrote) for comparisons in tests."""
from __future__ import annotations

from pathlib import Path

from rosbags.highlevel import AnyReader

from unipixel_ros.replay.types import typestore


def read_bag(path: Path) -> dict[str, list[tuple[str, int, bytes]]]:
    """topic -> [(msgtype, log time, CDR bytes)], in log order."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=typestore()) as reader:
        for conn, log_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((conn.msgtype, log_ns, bytes(raw)))
    return out
