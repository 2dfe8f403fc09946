"""tf2 for the components that move points between frames (clicks, objects in 3-D).

``tf2_ros`` is optional (a full ROS 2 install has it, the pip wheels may not): without it a
component keeps working in the camera's own frame and says why through the note.
"""
from __future__ import annotations

from typing import Any

from rclpy.node import Node


def listen_to_tf(node: Node) -> tuple[Any, Any, str]:
    """(buffer, listener, note): a tf2 buffer filled by a listener on ``node`` when ``tf2_ros``
    is importable, else (None, None, why not)."""
    try:
        import tf2_ros  # noqa: PLC0415 - optional: present on a full ROS 2 install
    except ImportError as exc:
        return None, None, f"tf2_ros is not available ({exc})"
    buffer = tf2_ros.Buffer()
    return buffer, tf2_ros.TransformListener(buffer, node), "tf2_ros"


def stop_listening(listener: Any) -> None:
    """Unsubscribe a listener from :func:`listen_to_tf` (None: nothing to do)."""
    if listener is not None and hasattr(listener, "unregister"):
        listener.unregister()
