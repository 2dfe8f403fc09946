"""Every request gets an answer, however many arrive at once (node process, DDS on loopback,
slow pipeline double).

Many clients calling ``~/query`` (service or action) together must each get a reply:
served, refused as busy, or an error; none may be left waiting for ever. The memory
services exist from configure to cleanup like ``~/query`` and say so while inactive.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, NodeProcess, image_msg, wait_for  # noqa: E402
from unipixel_ros.action import Query as QueryAction  # noqa: E402
from unipixel_ros.ros.model_host import MAX_QUEUED  # noqa: E402
from unipixel_ros.srv import ListObjects, Query, RemoveObjects, ResetMemory  # noqa: E402

pytestmark = pytest.mark.ros

NS = "/btest"
SRV = f"{NS}/unipixel"
TOKEN_DELAY = 0.15          # 4 tokens: a query takes about 0.6 s
# More requests than the ROS default service queue (10) holds. The queue is as long as
# allowed, so the most executor threads are held by waiting requests.
SERVICE_BURST, GOAL_BURST = 30, 16
# Served requests finish one after another: at most (1 + MAX_QUEUED) queries of ~0.6 s,
# refusals at once; the rest is slack for a shared, slow CPU.
REPLY_DEADLINE_S = 30.0
# The burst's clients share this process. Each client's response reader also receives the
# responses meant for the others in its process (rmw_fastrtps, see ros2/rclcpp#2397) and
# with the default depth of 10 overwrites its own before taking it. Clients in separate
# processes (robots, tools) do not have that problem, so the test's clients keep every
# response: what is checked is the node's side.
CLIENT_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL)
PARAMS = {
    "cameras": ["cam"],
    "query.busy_policy": "queue",
    "query.max_queued": MAX_QUEUED,
    "query.window_seconds": 30.0,
    "query.max_frame_age_s": 0.0,
    "tracking.rate_hz": 0.0,
    "model.id": "test-model",
}


@pytest.fixture(scope="module")
def setup():
    node = NodeProcess(NS, PARAMS, TOKEN_DELAY)
    client = Client("burst_test_client")
    try:
        node.wait_ready()
        pub = client.publisher(Image, f"{NS}/cam/image_raw")
        rgb = np.random.default_rng(0).integers(20, 230, (24, 32, 3), dtype=np.uint8)

        def answered() -> bool:      # camera topics are best effort: send until one frame arrives
            pub.publish(image_msg(rgb, time.time_ns(), "cam_optical"))
            return client.call(Query, f"{SRV}/query", Query.Request(camera="cam", text="ready?")).success
        wait_for(answered, 30, "a first answer")
        yield client, node
    finally:
        client.close()
        node.stop()


def wait_all(futures: list, what: str) -> None:
    deadline = time.monotonic() + REPLY_DEADLINE_S
    while not all(f.done() for f in futures):
        if time.monotonic() > deadline:
            raise AssertionError(f"only {sum(f.done() for f in futures)} of {len(futures)} {what} came "
                                 f"within {REPLY_DEADLINE_S} s")
        time.sleep(0.02)


def classify(success: bool, message: str) -> str:
    if success:
        return "served"
    return "busy" if message.startswith("busy") else f"error: {message}"


def test_a_burst_of_service_calls_gets_a_reply_for_every_call(setup) -> None:
    client, _ = setup
    clients = [client.node.create_client(Query, f"{SRV}/query", qos_profile=CLIENT_QOS)
               for _ in range(SERVICE_BURST)]
    try:
        assert all(c.wait_for_service(timeout_sec=20) for c in clients)
        futures = [c.call_async(Query.Request(camera="cam", text=f"question {i}")) for i, c in enumerate(clients)]
        wait_all(futures, "replies")
    finally:
        for c in clients:
            client.node.destroy_client(c)
    outcomes = [classify(f.result().success, f.result().message) for f in futures]
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    assert counts.get("served", 0) >= 1 and counts.get("busy", 0) >= 1, counts
    assert counts["served"] + counts["busy"] == SERVICE_BURST, counts


def test_a_burst_of_action_goals_gets_every_goal_cancel_and_result_answered(setup) -> None:
    client, _ = setup
    # Action clients stay until the client node closes: destroying one while the client's
    # executor spins can break that executor.
    actions = client.action_clients(QueryAction, f"{SRV}/query", GOAL_BURST, goal_service_qos_profile=CLIENT_QOS,
                                    result_service_qos_profile=CLIENT_QOS, cancel_service_qos_profile=CLIENT_QOS)
    assert all(a.wait_for_server(timeout_sec=20) for a in actions)
    sends = [a.send_goal_async(QueryAction.Goal(camera="cam", text=f"goal {i}")) for i, a in enumerate(actions)]
    wait_all(sends, "goal responses")
    handles = [s.result() for s in sends]
    assert all(h.accepted for h in handles)
    # Ask for every result and cancel every other goal, all at once.
    results = [h.get_result_async() for h in handles]
    cancels = [h.cancel_goal_async() for h in handles[1::2]]
    wait_all(cancels, "cancel responses")
    wait_all(results, "results")
    for wrapped in (r.result() for r in results):
        outcome = classify(wrapped.result.success, wrapped.result.message)
        if wrapped.status == GoalStatus.STATUS_SUCCEEDED:
            assert outcome == "served"
        elif wrapped.status == GoalStatus.STATUS_CANCELED:
            assert wrapped.result.message.startswith("canceled")
        else:
            assert wrapped.status == GoalStatus.STATUS_ABORTED and outcome == "busy", wrapped


def change_state(client: Client, transition: str) -> None:
    request = ChangeState.Request()
    request.transition.label = transition
    assert client.call(ChangeState, f"{SRV}/change_state", request).success, transition


MEMORY_CALLS = [(ListObjects, "list_objects", ListObjects.Request()),
                (RemoveObjects, "remove_objects", RemoveObjects.Request(ids=[7])),
                (ResetMemory, "reset_memory", ResetMemory.Request())]


def test_memory_services_answer_while_inactive_and_serve_again_after_activate(setup) -> None:
    client, _ = setup
    change_state(client, "deactivate")
    try:
        for srv_type, name, request in MEMORY_CALLS:
            response = client.call(srv_type, f"{SRV}/{name}", request, timeout=10)
            assert not response.success
            assert "the node is inactive" in response.message, (name, response.message)
    finally:
        change_state(client, "activate")
    assert client.call(ListObjects, f"{SRV}/list_objects", ListObjects.Request()).success
    assert client.call(ResetMemory, f"{SRV}/reset_memory", ResetMemory.Request()).success
    unknown = client.call(RemoveObjects, f"{SRV}/remove_objects", RemoveObjects.Request(ids=[7]))
    assert not unknown.success and unknown.message == "no object with id 7 in memory"
