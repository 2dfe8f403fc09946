"""Every msg/srv/action of the package is generated, and crosses DDS between two processes
intact: each field is set (test/helpers/fill.py) and compared after the round trip."""
import subprocess
import time

import pytest
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile

from helpers.fill import fill
from helpers.interfaces import interface_types
from helpers.ros_client import HELPERS, RosClient, ros_args, spawn

pytestmark = pytest.mark.ros
TYPES = interface_types()
NS = "/echo"


@pytest.fixture(scope="module")
def client():
    proc = spawn([str(HELPERS / "interface_echo.py"), *ros_args(NS, {})], stdout=subprocess.PIPE)
    c = RosClient("interfaces_test_client")
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield c
    finally:
        c.close()
        proc.terminate()
        proc.wait(20)


def test_every_definition_file_has_a_generated_type() -> None:
    assert TYPES["msg"] and TYPES["srv"] and TYPES["action"]
    for cls in TYPES["srv"].values():
        assert cls.Request and cls.Response
    for cls in TYPES["action"].values():
        assert cls.Goal and cls.Result and cls.Feedback


@pytest.mark.parametrize("name", sorted(TYPES["msg"]))
def test_message_round_trip(client: RosClient, name: str) -> None:
    cls = TYPES["msg"][name]
    received = []
    sub = client.node.create_subscription(cls, f"{NS}/msg/{name}/out", received.append, QoSProfile(depth=10))
    pub = client.node.create_publisher(cls, f"{NS}/msg/{name}/in", QoSProfile(depth=10))
    sent = fill(cls, seed=7)
    try:
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            if pub.get_subscription_count() and client.node.count_publishers(f"{NS}/msg/{name}/out"):
                pub.publish(sent)
            time.sleep(0.2)
        assert received, f"{name} did not come back"
        assert received[0] == sent
        assert received[0] != cls()
    finally:
        client.node.destroy_subscription(sub)
        client.node.destroy_publisher(pub)


@pytest.mark.parametrize("name", sorted(TYPES["srv"]))
def test_service_round_trip(client: RosClient, name: str) -> None:
    cls = TYPES["srv"][name]
    assert client.call(cls, f"{NS}/srv/{name}", fill(cls.Request)) == fill(cls.Response)
    # the server compared the request field by field: any other request gets an empty answer
    assert client.call(cls, f"{NS}/srv/{name}", fill(cls.Request, seed=2)) == cls.Response()


@pytest.mark.parametrize("name", sorted(TYPES["action"]))
def test_action_round_trip(client: RosClient, name: str) -> None:
    cls = TYPES["action"][name]
    action = ActionClient(client.node, cls, f"{NS}/action/{name}")
    feedback = []
    try:
        assert action.wait_for_server(timeout_sec=20)
        goal_future = action.send_goal_async(fill(cls.Goal), feedback_callback=feedback.append)
        client.wait_for(goal_future.done, 20, "goal acceptance")
        result_future = goal_future.result().get_result_async()
        client.wait_for(result_future.done, 20, "the result")
        result = result_future.result()
        assert result.status == GoalStatus.STATUS_SUCCEEDED
        assert result.result == fill(cls.Result)
        client.wait_for(lambda: bool(feedback), 5, "feedback")
        assert feedback[0].feedback == fill(cls.Feedback)
    finally:
        action.destroy()
