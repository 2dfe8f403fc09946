"""Reading a rosbag2 recording (MCAP or sqlite3) with rosbags: topics, types, messages in log order.

Camera and ground-truth messages are handed on as their recorded CDR bytes: the runner
deserialises them with rclpy into the very message classes the node's subscriptions
receive, and the writer copies them into the output bag unchanged.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection

from unipixel_ros.replay.errors import ReplayError
from unipixel_ros.replay.types import typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TRANSPORTS = {IMAGE: "raw", COMPRESSED: "compressed"}


@dataclass(frozen=True)
class Record:
    """One recorded message: its topic, type, log time [ns] and CDR bytes."""

    topic: str
    msgtype: str
    log_ns: int
    data: bytes


class Recording:
    """An open recording; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ReplayError(f"input bag {self.path} does not exist")
        self._reader = AnyReader([self.path], default_typestore=typestore())
        try:
            self._reader.open()
        except Exception as exc:  # rosbags' reader errors, and sqlite / mcap faults underneath
            raise ReplayError(f"cannot read the bag {self.path}: {type(exc).__name__}: {exc}") from exc
        self.topics: dict[str, str] = {c.topic: c.msgtype for c in self._reader.connections}

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def start_ns(self) -> int:
        return self._reader.start_time

    @property
    def end_ns(self) -> int:
        """Log time of the last message (rosbags' end_time is one past it)."""
        return self._reader.end_time - 1

    def connections(self, topic: str) -> list[Connection]:
        return [c for c in self._reader.connections if c.topic == topic]

    def require(self, topic: str, allowed: Iterable[str], what: str) -> str:
        """The type recorded on ``topic``, which must be one of ``allowed``; else ReplayError naming it."""
        allowed = tuple(allowed)
        msgtype = self.topics.get(topic)
        if msgtype is None:
            known = ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "none"
            raise ReplayError(f"{what}: topic {topic} is not in the bag {self.path} (its topics: {known})")
        if msgtype not in allowed:
            raise ReplayError(f"{what}: topic {topic} carries {msgtype}, expected {' or '.join(allowed)}")
        return msgtype

    def messages(self, topics: Iterable[str], start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[Record]:
        """The messages of ``topics`` logged in [start_ns, end_ns], in log order."""
        conns = [c for t in topics for c in self.connections(t)]
        stop = None if end_ns is None else end_ns + 1
        try:
            for conn, log_ns, data in self._reader.messages(connections=conns, start=start_ns, stop=stop):
                yield Record(conn.topic, conn.msgtype, log_ns, bytes(data))
        except ReplayError:
            raise
        except Exception as exc:  # a truncated or corrupt file shows up while reading
            raise ReplayError(f"cannot read the bag {self.path}: {type(exc).__name__}: {exc}") from exc

    def first_times(self, topics: Iterable[str], start_ns: int | None, end_ns: int | None) -> dict[str, int]:
        """Log time of each topic's first message in the range (topics without one are left out)."""
        wanted, first = set(topics), {}
        for record in self.messages(wanted, start_ns, end_ns):
            first.setdefault(record.topic, record.log_ns)
            if len(first) == len(wanted):
                break
        return first
