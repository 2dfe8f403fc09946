"""The rosbags type store: the standard ROS 2 messages plus this package's, read from its .msg files.

The ``.msg`` files are found in the installed share directory (``ament_index``) or, in a
source checkout, in its ``msg/`` folder; their text is parsed by rosbags, never copied here.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_typestore, get_types_from_msg
from rosbags.typesys.store import Typestore

from unipixel_ros.replay.errors import ReplayError

PACKAGE = "unipixel_ros"
STORE = Stores.ROS2_KILTED          # the distribution of the rclpy this project runs on


def msg_dir() -> Path:
    """Where this package's .msg files are: the installed share dir first, else the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # not installed / no ament index: fall back to the checkout
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for path in candidates:
        if any(path.glob("*.msg")):
            return path
    raise ReplayError(f"cannot find the {PACKAGE} .msg files (looked in {', '.join(map(str, candidates))})")


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The standard types of :data:`STORE` with every ``unipixel_ros/msg/*`` registered."""
    store = get_typestore(STORE)
    types: dict = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
