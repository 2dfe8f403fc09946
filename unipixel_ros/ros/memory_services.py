"""``~/list_objects``, ``~/remove_objects`` and ``~/reset_memory``: the kept objects, by hand.

These never touch the model, so they answer at once even while a query runs.
Removing objects ends their tracking (the tracker state travels with the object).
Like ``~/query`` they exist from configure to cleanup, so a client never waits for a
service that an inactive node has taken away: while inactive they answer
``success = false`` and say so.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from unipixel_ros.object_store import ObjectStore, UnknownCameraError
from unipixel_ros.ros.messages import object_info_msg
from unipixel_ros.ros.qos import REQUEST_QOS
from unipixel_ros.srv import ListObjects, RemoveObjects, ResetMemory


INACTIVE_MESSAGE = "the node is inactive; activate it (lifecycle) to use the object memory"


class MemoryServices:
    """Node component serving the memory services."""

    def __init__(self, node: Node, store: ObjectStore, on_removed: Callable[[str], None]) -> None:
        self._node = node
        self._store = store
        self._on_removed = on_removed
        self._active = False
        group = MutuallyExclusiveCallbackGroup()
        self._services = [
            node.create_service(srv_type, name, self._unless_inactive(serve), qos_profile=REQUEST_QOS,
                                callback_group=group)
            for srv_type, name, serve in ((ListObjects, "~/list_objects", self._list),
                                          (RemoveObjects, "~/remove_objects", self._remove),
                                          (ResetMemory, "~/reset_memory", self._reset))]

    def activate(self) -> None:
        self._active = True

    def deactivate(self) -> None:
        self._active = False

    def cleanup(self) -> None:
        self._active = False
        for service in self._services:
            self._node.destroy_service(service)
        self._services.clear()

    def diagnostics(self) -> list:
        return []

    def _unless_inactive(self, serve: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """``serve`` while active; otherwise ``success = false`` and :data:`INACTIVE_MESSAGE`."""
        def callback(request: Any, response: Any) -> Any:
            if not self._active:
                response.success, response.message = False, INACTIVE_MESSAGE
                return response
            return serve(request, response)
        return callback

    def _list(self, request: ListObjects.Request, response: ListObjects.Response) -> ListObjects.Response:
        try:
            objects = self._store.objects(request.camera or None)
        except UnknownCameraError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        response.objects = [object_info_msg(o) for o in objects]
        return response

    def _remove(self, request: RemoveObjects.Request, response: RemoveObjects.Response) -> RemoveObjects.Response:
        cameras = {o.object_id: o.camera for o in self._store.objects()}
        removed, unknown = self._store.remove(list(request.ids))
        response.removed = removed
        response.success = not unknown
        if unknown:
            response.message = "no object with id " + ", ".join(str(i) for i in unknown) + " in memory"
        for camera in {cameras[i] for i in removed}:
            self._on_removed(camera)
        return response

    def _reset(self, request: ResetMemory.Request, response: ResetMemory.Response) -> ResetMemory.Response:
        try:
            response.removed = self._store.reset(request.camera or None)
        except UnknownCameraError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success = True
        for camera in ([request.camera] if request.camera else self._store.cameras):
            self._on_removed(camera)
        return response
