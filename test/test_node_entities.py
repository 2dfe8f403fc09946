"""UniPixelNode releases subscriptions, publishers and services safely under a spinning executor.

In-process, on a MultiThreadedExecutor as the node program uses it: a publisher is
destroyed while a callback is about to publish on it, a service while it answers, and a
subscription while the executor has handed a QoS event of it to its (busy) thread pool.
Each used to raise InvalidHandle out of the executor. Afterwards the entities go away.
"""
from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.event_handler import QoSSubscriptionEventType, SubscriptionEventCallbacks  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from helpers.perception_client import wait_for  # noqa: E402
from unipixel_ros.ros.node import UniPixelNode  # noqa: E402
from unipixel_ros.ros.spinner import stop_spinning  # noqa: E402

pytestmark = pytest.mark.ros

POOL = 2


class Spinning:
    """A UniPixelNode without components on a spinning MultiThreadedExecutor of POOL threads."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = UniPixelNode(name, components=(), context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=POOL, context=self.context)
        self.executor.add_node(self.node)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        # Triggering it makes the executor hand out one more callback, and with it raise
        # what an earlier one raised.
        self._poke = self.node.create_guard_condition(lambda: None, callback_group=ReentrantCallbackGroup())

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except BaseException as exc:   # what the node program would die of
            self.error = exc

    def settle(self) -> None:
        """Have the executor hand out a few more callbacks, raising an earlier one's error."""
        for _ in range(5):
            self._poke.trigger()
            time.sleep(0.1)
        assert self.error is None, repr(self.error)

    def close(self) -> None:
        stop_spinning(self.executor, self._thread)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture()
def spinning(request):
    s = Spinning(f"entities_{request.node.name.split('[')[0][5:]}")
    yield s
    s.close()


def test_a_publisher_destroyed_while_a_callback_is_about_to_publish(spinning: Spinning) -> None:
    node, topic = spinning.node, "/entities/published"
    pub = node.create_publisher(String, topic, QoSProfile(depth=1))
    started, proceed, published = threading.Event(), threading.Event(), threading.Event()

    def step() -> None:                  # a timer callback that publishes, like the tracker's
        timer.cancel()
        started.set()
        proceed.wait(10)
        pub.publish(String(data="last"))
        published.set()

    timer = node.create_timer(0.01, step, callback_group=ReentrantCallbackGroup())
    assert started.wait(10)
    node.destroy_timer(timer)
    assert node.destroy_publisher(pub)
    assert pub not in node.publishers
    proceed.set()
    spinning.settle()
    assert published.is_set()
    del pub, step
    wait_for(lambda: node.count_publishers(topic) == 0, 10, "the publisher gone")


def test_a_service_destroyed_while_it_answers(spinning: Spinning) -> None:
    node, name = spinning.node, "/entities/trigger"
    entered, proceed = threading.Event(), threading.Event()

    def answer(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        entered.set()
        proceed.wait(10)
        response.success = True
        return response

    group = ReentrantCallbackGroup()
    srv = node.create_service(Trigger, name, answer, callback_group=group)
    client = node.create_client(Trigger, name, callback_group=group)
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    assert entered.wait(10)
    assert node.destroy_service(srv)
    assert srv not in node.services
    proceed.set()
    wait_for(future.done, 10, "the answer")
    spinning.settle()
    assert future.result().success
    del srv, answer
    wait_for(lambda: not client.service_is_ready(), 10, "the service gone")


def test_a_subscription_destroyed_while_its_event_waits_for_a_thread(spinning: Spinning) -> None:
    node, topic = spinning.node, "/entities/incompatible"
    release, busy = threading.Event(), threading.Semaphore(0)

    def block() -> None:
        busy.release()
        release.wait(10)

    group = ReentrantCallbackGroup()
    blockers = [node.create_guard_condition(block, callback_group=group) for _ in range(POOL)]
    for blocker in blockers:
        blocker.trigger()
    for _ in range(POOL):                # every pool thread is held: what is handed out waits
        assert busy.acquire(timeout=10)
    events: list = []
    sub = node.create_subscription(String, topic, lambda msg: None,
                                   QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
                                   event_callbacks=SubscriptionEventCallbacks(incompatible_qos=events.append))
    (handler,) = [h for h in sub.event_handlers
                  if h.event_type == QoSSubscriptionEventType.RCL_SUBSCRIPTION_REQUESTED_INCOMPATIBLE_QOS]
    # A best-effort publisher cannot serve a reliable subscription: the event fires.
    node.create_publisher(String, topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    # rclpy marks a waitable it handed to its pool and has not taken yet.
    wait_for(lambda: handler._executor_event, 20, "the executor handing out the event")
    assert node.destroy_subscription(sub)
    release.set()
    spinning.settle()
    wait_for(lambda: events, 10, "the event taken")
    assert events[0].total_count == 1
    del sub, handler
    wait_for(lambda: node.count_subscribers(topic) == 0, 10, "the subscription gone")


def test_stop_spinning_returns_once_the_spinning_thread_has_left_spin() -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("stop_spinning_probe", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert stop_spinning(executor, thread, timeout_s=10.0)
        assert not thread.is_alive()      # nothing spins any more: the node can be destroyed safely
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
