"""Writing the output bag: written under a temporary name, renamed into place only on success.

A failed or interrupted replay removes its partial bag (:meth:`OutputBag.abort`) and the
program says so; it never leaves a half-written bag under the name asked for.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer

from unipixel_ros.replay.errors import ReplayError
from unipixel_ros.replay.types import typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def ros_type_name(msg: Any) -> str:
    """``pkg/msg/Name`` of an rclpy message object."""
    return f"{type(msg).__module__.split('.')[0]}/msg/{type(msg).__name__}"


class OutputBag:
    """A rosbag2 being written inside ``<path>.partial/``, moved to ``path`` by :meth:`finish`.

    The bag is written under its final folder name (rosbag2 names its storage file and its
    metadata after that folder), in a temporary parent folder beside it.
    """

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise ReplayError(f"output storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise ReplayError(f"output bag {self.path} exists already; remove it or choose another name")
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)   # a partial bag left by a replay killed outright
        self.partial.mkdir(parents=True)
        self._writer = Writer(self.partial / self.path.name, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}

    def _connection(self, topic: str, msgtype: str) -> Connection:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise ReplayError(f"output topic {topic} would carry both {conn.msgtype} and {msgtype}")
        return conn

    def write_raw(self, topic: str, msgtype: str, log_ns: int, data: bytes) -> None:
        """A message as CDR bytes (copied from the input bag)."""
        self._writer.write(self._connection(topic, msgtype), log_ns, data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write(self, topic: str, log_ns: int, msg: Any) -> None:
        """An rclpy message, serialised as the node's publisher would."""
        self.write_raw(topic, ros_type_name(msg), log_ns, serialize_message(msg))

    def finish(self) -> Path:
        """Close the bag and move it to its name."""
        self._writer.close()
        os.replace(self.partial / self.path.name, self.path)
        self.partial.rmdir()
        return self.path

    def abort(self) -> Path:
        """Close and delete the partial bag; returns where it was."""
        try:
            self._writer.close()
        except Exception:  # closing a bag after the failure that aborts it may fail too
            pass
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.partial
