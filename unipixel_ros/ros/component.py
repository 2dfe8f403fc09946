"""What the node's parts implement, so new features plug in without touching the node.

A component is built when the node configures (from the validated config and the
camera feeds), follows the node through activate / deactivate, releases
everything in ``cleanup`` and reports its own ``/diagnostics`` statuses. Camera
ingest is one; a query server, the tracking publisher and click handlers are
others, each in its own module, listed in ``node.COMPONENTS``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from diagnostic_msgs.msg import DiagnosticStatus

from unipixel_ros.ros.params import NodeConfig

if TYPE_CHECKING:
    from rclpy.lifecycle import LifecycleNode

    from unipixel_ros.ros.ingest import CameraFeed


class NodeComponent(Protocol):
    def activate(self) -> None:
        """Start working: create subscriptions, servers, timers that act on data."""

    def deactivate(self) -> None:
        """Stop working but keep state, so that activate can resume."""

    def cleanup(self) -> None:
        """Release everything; the component is discarded afterwards."""

    def diagnostics(self) -> Sequence[DiagnosticStatus]:
        """Current statuses for ``/diagnostics`` (may be empty)."""


@dataclass(frozen=True)
class NodeContext:
    """What a component gets at configure."""

    node: LifecycleNode
    config: NodeConfig
    feeds: Mapping[str, CameraFeed]      # camera name -> feed (its window is ``feed.window``)


ComponentFactory = Callable[[NodeContext], NodeComponent]
