"""Releasing a node's entities while an executor waits on them and runs their callbacks.

Components create and destroy subscriptions, publishers and services in lifecycle
transitions, while the executor (rclpy 9.1's MultiThreadedExecutor) waits on the node's
entities in one thread and runs callbacks in a pool. Three uses of an entity there do not
mark it in use, so destroying it under them raises ``InvalidHandle`` out of the executor
and ends the process:

* a QoS event handler (message lost, incompatible QoS or type: rclpy gives every
  subscription and publisher the last two) found ready is taken in a pool thread after
  the wait set that found it is gone (``EventHandler.take_data``);
* a publisher is used by callbacks still running (a timer that publishes);
* a service answers a request after its callback returned (``Service.send_response``).

:class:`ReleasingNode` therefore takes event handlers and publishers off the node (the
executor's next wait set leaves them out) without destroying them: the last wait set or
callback holding one releases it, and with it its rcl entity. A service is taken off at
once and destroyed when no request of its is under way any more. Subscriptions are
destroyed at once (a camera stops sending), which the executor tolerates. That the
executor never lists an entity half destroyed is :class:`~unipixel_ros.ros.spinner.Spinner`'s part.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription


class ServiceGroup(CallbackGroup):
    """A service's callback group as the executor sees it: ``group`` decides, and the requests
    under way are counted, from before their take to after their response."""

    def __init__(self, group: CallbackGroup) -> None:
        super().__init__()
        self._group = group
        self._lock = threading.Lock()
        self._under_way = 0
        self._when_idle: Callable[[], None] | None = None

    def add_entity(self, entity: Any) -> None:
        super().add_entity(entity)
        self._group.add_entity(entity)

    def can_execute(self, entity: Any) -> bool:
        return self._group.can_execute(entity)

    def beginning_execution(self, entity: Any) -> bool:
        if not self._group.beginning_execution(entity):
            return False
        with self._lock:
            self._under_way += 1
        return True

    def ending_execution(self, entity: Any) -> None:
        self._group.ending_execution(entity)
        with self._lock:
            self._under_way -= 1
            action = self._when_idle if self._under_way == 0 else None
            if action is not None:
                self._when_idle = None
        if action is not None:
            action()

    def when_idle(self, action: Callable[[], None]) -> None:
        """``action()`` now if no request is under way, else after the last one's response."""
        with self._lock:
            if self._under_way:
                self._when_idle = action
                return
        action()


class ReleasingNode(Node):
    """Mixin for a node (before its rclpy base): entities are released as the module says."""

    def destroy_subscription(self, subscription: Subscription[Any]) -> bool:
        if subscription in self.subscriptions:
            self._detach_event_handlers(subscription)
        return super().destroy_subscription(subscription)

    def destroy_publisher(self, publisher: Publisher[Any]) -> bool:
        if publisher not in self._publishers:
            return False
        self._publishers.remove(publisher)
        self._detach_event_handlers(publisher)
        return True

    def create_service(self, *args: Any, callback_group: CallbackGroup | None = None,
                       **kwargs: Any) -> Service[Any, Any]:
        group = ServiceGroup(callback_group or self.default_callback_group)
        return super().create_service(*args, callback_group=group, **kwargs)

    def destroy_service(self, service: Service[Any, Any]) -> bool:
        if service not in self._services:
            return False
        self._services.remove(service)
        self._wake_executor()
        group = service.callback_group
        if isinstance(group, ServiceGroup):
            group.when_idle(lambda: _destroy(service))
        else:
            _destroy(service)
        return True

    def _detach_event_handlers(self, entity: Subscription[Any] | Publisher[Any]) -> None:
        for handler in entity.event_handlers:
            self.remove_waitable(handler)
        entity.event_handlers = []          # so that destroying the entity leaves them alone


def _destroy(service: Service[Any, Any]) -> None:
    try:
        service.destroy()
    except InvalidHandle:                   # destroyed already
        pass
