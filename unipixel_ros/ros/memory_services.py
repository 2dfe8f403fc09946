"""``~/list_objects``, ``~/remove_objects`` and ``~/reset_memory``: the kept objects, by hand.

These never touch the model, so they answer at once even while a query runs.
Removing objects ends their tracking (the tracker state travels with the object).
"""
from __future__ import annotations

from collections.abc import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from unipixel_ros.object_store import ObjectStore, UnknownCameraError
from unipixel_ros.ros.messages import object_info_msg
from unipixel_ros.srv import ListObjects, RemoveObjects, ResetMemory


class MemoryServices:
    """Node component serving the memory services."""

    def __init__(self, node: Node, store: ObjectStore, on_removed: Callable[[str], None]) -> None:
        self._node = node
        self._store = store
        self._on_removed = on_removed
        self._services: list = []

    def activate(self) -> None:
        group = MutuallyExclusiveCallbackGroup()
        self._services = [
            self._node.create_service(ListObjects, "~/list_objects", self._list, callback_group=group),
            self._node.create_service(RemoveObjects, "~/remove_objects", self._remove, callback_group=group),
            self._node.create_service(ResetMemory, "~/reset_memory", self._reset, callback_group=group),
        ]

    def deactivate(self) -> None:
        for service in self._services:
            self._node.destroy_service(service)
        self._services.clear()

    def cleanup(self) -> None:
        self.deactivate()

    def diagnostics(self) -> list:
        return []

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
