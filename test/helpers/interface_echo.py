"""Serves every unipixel_ros interface so the tests can send them through a second process.

    python test/helpers/interface_echo.py --ros-args -r __ns:=/echo

* topic ``msg/<Name>/in`` -> republished unchanged on ``msg/<Name>/out``
* service ``srv/<Name>``: answers ``fill(Response)`` if the request equals ``fill(Request)``,
  an empty response otherwise
* action ``action/<Name>``: same rule for the goal; one feedback ``fill(Feedback)``
"""
from __future__ import annotations

import sys
from pathlib import Path

import rclpy
from rclpy.action import ActionServer
from rclpy.qos import QoSProfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # the test directory
from helpers.fill import fill  # noqa: E402
from helpers.interfaces import interface_types  # noqa: E402


def main() -> None:
    rclpy.init(args=sys.argv)
    node = rclpy.create_node("interface_echo")
    types = interface_types()
    for name, cls in types["msg"].items():
        pub = node.create_publisher(cls, f"msg/{name}/out", QoSProfile(depth=10))
        node.create_subscription(cls, f"msg/{name}/in", pub.publish, QoSProfile(depth=10))
    for name, cls in types["srv"].items():
        def answer(request, response, cls=cls):
            return fill(cls.Response) if request == fill(cls.Request) else response
        node.create_service(cls, f"srv/{name}", answer)
    for name, cls in types["action"].items():
        def execute(handle, cls=cls):
            if handle.request != fill(cls.Goal):
                handle.abort()
                return cls.Result()
            handle.publish_feedback(fill(cls.Feedback))
            handle.succeed()
            return fill(cls.Result)
        ActionServer(node, cls, f"action/{name}", execute)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
