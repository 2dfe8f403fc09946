"""The installed entry point as a real process: start-up errors, and the lifecycle driven
over its services the way a lifecycle manager does it."""
import subprocess
import time

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from helpers.ros_client import RosClient, ros_args, spawn

pytestmark = pytest.mark.ros

NODE = ["-m", "unipixel_ros.ros.node"]


@pytest.fixture(scope="module")
def client():
    c = RosClient("lifecycle_test_client")
    yield c
    c.close()


def test_invalid_parameters_stop_the_node_with_a_message_naming_them() -> None:
    cases = {
        "cameras": {},
        "window.duration_s": {"cameras": ["front"], "window.duration_s": -2.0},
        "qos.input": {"cameras": ["front"], "qos.input": "fastest"},
    }
    procs = {name: spawn([*NODE, *ros_args("/bad", params)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE) for name, params in cases.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert f"configure failed: invalid parameters: {name}: " in err


def set_string_parameter(client: RosClient, node: str, name: str, value: str) -> None:
    request = SetParameters.Request(parameters=[ParameterMsg(
        name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))])
    assert client.call(SetParameters, f"{node}/set_parameters", request).results[0].successful


def front_status(client: RosClient) -> str:
    status = client.status("/lc/unipixel: camera front")
    return status.message if status else ""


def frames_held(client: RosClient) -> int:
    return int(client.values("/lc/unipixel: camera front").get("frames_held", 0))


def test_lifecycle_transitions_over_services(client: RosClient) -> None:
    node, topic = "/lc/unipixel", "/lc/front/image_raw"
    proc = spawn([*NODE, *ros_args("/lc", {"cameras": ["front"], "auto_start": False,
                                           "diagnostics.period_s": 0.2})],
                 stderr=subprocess.PIPE)
    try:
        assert client.lifecycle_state(node) == "unconfigured"
        assert client.node.count_subscribers(topic) == 0

        assert client.change_state(node, "configure")
        assert client.lifecycle_state(node) == "inactive"
        client.wait_for(lambda: front_status(client) == "inactive", 10, "an inactive camera status")
        assert client.node.count_subscribers(topic) == 0

        assert client.change_state(node, "activate")
        client.wait_for(lambda: client.node.count_subscribers(topic) == 1, 10, "the subscription")
        (info,) = client.node.get_subscriptions_info_by_topic(topic)
        assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT   # sensor-data default

        pub = client.node.create_publisher(Image, topic, QoSProfile(depth=5))
        msg = Image(height=2, width=2, encoding="mono8", step=2)
        msg.data = np.arange(4, dtype=np.uint8).tobytes()
        for i in range(1, 100):                      # best effort: send until one is held
            msg.header.stamp.sec = i
            pub.publish(msg)
            if frames_held(client):
                break
            time.sleep(0.1)
        assert frames_held(client)

        assert client.change_state(node, "deactivate")
        client.wait_for(lambda: client.node.count_subscribers(topic) == 0, 10, "unsubscribing")
        client.wait_for(lambda: front_status(client) == "inactive", 10, "an inactive status")
        assert frames_held(client)                                  # the window is kept while inactive

        assert client.change_state(node, "cleanup")
        assert client.lifecycle_state(node) == "unconfigured"

        set_string_parameter(client, node, "qos.input", "fastest")
        assert not client.change_state(node, "configure")
        assert client.lifecycle_state(node) == "unconfigured"
        set_string_parameter(client, node, "qos.input", "reliable")
        assert client.change_state(node, "configure")
        assert client.change_state(node, "activate")
        client.wait_for(lambda: client.node.count_subscribers(topic) == 1, 10, "the subscription")
        (info,) = client.node.get_subscriptions_info_by_topic(topic)
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "qos.input: unknown QoS profile 'fastest'" in err
    assert proc.returncode == 0          # SIGTERM stops it like SIGINT: quietly, status 0
    assert "Traceback" not in err
