"""Named QoS profiles, so parameters can say ``sensor_data`` or ``reliable`` instead of policies."""
from __future__ import annotations

from collections.abc import Callable

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


class QosError(ValueError):
    """A QoS profile name or depth that cannot be built; ``field`` is "name" or "depth"."""

    def __init__(self, field_name: str, why: str) -> None:
        super().__init__(why)
        self.field = field_name


def _profile(reliability: ReliabilityPolicy,
             durability: DurabilityPolicy = DurabilityPolicy.VOLATILE) -> Callable[[int], QoSProfile]:
    return lambda depth: QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                                    reliability=reliability, durability=durability)


_PROFILES: dict[str, Callable[[int], QoSProfile]] = {
    # Camera drivers' convention: newest data wins, nothing is re-sent.
    "sensor_data": _profile(ReliabilityPolicy.BEST_EFFORT),
    "best_effort": _profile(ReliabilityPolicy.BEST_EFFORT),
    "reliable": _profile(ReliabilityPolicy.RELIABLE),
    # Late joiners get the last `depth` messages (latched outputs).
    "transient_local": _profile(ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL),
    # Match whatever the publishers offer.
    "best_available": _profile(ReliabilityPolicy.BEST_AVAILABLE, DurabilityPolicy.BEST_AVAILABLE),
    "system_default": _profile(ReliabilityPolicy.SYSTEM_DEFAULT, DurabilityPolicy.SYSTEM_DEFAULT),
}
QOS_NAMES: tuple[str, ...] = tuple(_PROFILES)

# Requests to the node's services and action (goal, cancel and result services): every one
# is kept until the executor takes it. The ROS default for services keeps only the last
# 10, so in a burst of more clients DDS overwrites requests the executor has not taken yet
# (it takes them one at a time, on a free thread) and those clients wait for ever. Keeping
# all lets each request be taken and answered: served, queued, or refused as busy.
REQUEST_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)


def qos_profile(name: str, depth: int) -> QoSProfile:
    """The keep-last profile called ``name`` with history ``depth``."""
    factory = _PROFILES.get(name)
    if factory is None:
        raise QosError("name", f"unknown QoS profile '{name}' (expected one of {', '.join(QOS_NAMES)})")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise QosError("depth", f"QoS depth must be an integer >= 1, got {depth!r}")
    return factory(depth)
