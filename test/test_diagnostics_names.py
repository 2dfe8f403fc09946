"""Model-side /diagnostics statuses carry the node's namespace, as the camera statuses do, so
that nodes of the same name in different namespaces report separately."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
from helpers.perception_client import NodeProcess  # noqa: E402
from helpers.ros_client import RosClient  # noqa: E402

pytestmark = pytest.mark.ros


def test_model_and_clicks_statuses_are_named_with_the_fully_qualified_node_name() -> None:
    node = NodeProcess("/diag_names", {"cameras": ["cam"], "diagnostics.period_s": 0.2,
                                       "tracking.rate_hz": 0.0, "model.id": "test-model"})
    client = RosClient("diag_names_client")
    try:
        node.wait_ready()
        camera = f"{node.fqn}: camera cam"
        client.wait_for(lambda: client.status(camera) is not None, 30, "the camera status")
        # Every status of the node comes in one DiagnosticArray, so the others are there too.
        client.wait_for(lambda: client.status(f"{node.fqn}: model") is not None
                        and client.status(f"{node.fqn}: clicks") is not None, 10,
                        f"model and clicks statuses named '{node.fqn}: ...'")
        assert client.status("unipixel: model") is None and client.status("unipixel: clicks") is None
    finally:
        client.close()
        node.stop()
