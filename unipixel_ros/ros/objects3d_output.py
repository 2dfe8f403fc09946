"""Objects in 3-D as ROS messages: ``Object3D`` fields, RViz markers and a point cloud.

:class:`Locator` turns a camera frame's masks into :class:`~unipixel_ros.objects3d.Object3D`
(depth paired by :meth:`CameraFeed.registered_depth`, geometry by
:mod:`unipixel_ros.objects3d`) and moves them into ``depth.target_frame`` through tf2 when
that is set, ``tf2_ros`` is importable and the transform is known; otherwise they stay in
the camera's optical frame and the ``3-D`` status says why. Without a node (an offline
replay) it has no tf2 and locates in the optical frame.

The tracker publishes, per camera and stamped with the source frame:

* ``~/<camera>/markers`` (``visualization_msgs/MarkerArray``): per object an oriented box
  (namespace ``box``), a centroid sphere (``centroid``) and a text "<id> <label>"
  (``label``), marker id = object id; an object that is removed, reset or lost, or has no
  3-D on the frame, gets DELETE markers once;
* ``~/<camera>/object_points`` (``sensor_msgs/PointCloud2``): every object's points,
  fields x, y, z (float32, metres) and object_id (uint32), little-endian, unordered.

:class:`Outputs3D` builds both messages of a frame, for the node's tracker and the replay alike.
"""
from __future__ import annotations

import colorsys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from unipixel_ros.frames import Frame
from unipixel_ros.msg import Object3D as Object3DMsg
from unipixel_ros.objects3d import DepthError, DepthSettings, Object3D, locate, quaternion_matrix, transformed
from unipixel_ros.ros.ingest import CameraFeed
from unipixel_ros.ros.messages import header
from unipixel_ros.ros.tf import listen_to_tf, stop_listening

MARKER_NAMESPACES: tuple[str, ...] = ("box", "centroid", "label")
POINT_FIELDS = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                PointField(name="object_id", offset=12, datatype=PointField.UINT32, count=1)]
_POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("object_id", "<u4")])


def markers_topic(camera: str) -> str:
    return f"~/{camera}/markers"


def points_topic(camera: str) -> str:
    return f"~/{camera}/object_points"


@dataclass(frozen=True)
class Located:
    """One object's 3-D on a frame, or why it has none (``obj`` None, ``status`` the reason)."""

    obj: Object3D | None
    status: str
    frame_id: str


class Locator:
    """Masks on a camera frame -> objects in 3-D, in the target frame where it can."""

    def __init__(self, node: Node | None, feeds: Mapping[str, CameraFeed], settings: DepthSettings) -> None:
        """``node``: the node whose tf2 listener moves results into ``depth.target_frame`` once
        active; None offline (no tf2, results in each camera's optical frame)."""
        self._node = node
        self._feeds = feeds
        self.settings = settings
        self._tf_buffer = self._tf_listener = None
        self._tf_note = "no depth.target_frame: results in each camera's optical frame"
        self._lock = threading.Lock()
        self._objects = 0
        self._seconds = 0.0
        self._last_transform_problem = ""

    @property
    def enabled(self) -> bool:
        """Whether any camera has depth (else every answer is 2-D and nothing is published in 3-D)."""
        return any(f.config.depth_topic for f in self._feeds.values())

    def activate(self) -> None:
        if self.settings.target_frame and self.enabled and self._node is not None:
            self._tf_buffer, self._tf_listener, note = listen_to_tf(self._node)
            self._tf_note = (f"to '{self.settings.target_frame}' through tf2" if self._tf_buffer is not None else
                             f"depth.target_frame '{self.settings.target_frame}' is set but {note}; results "
                             "stay in each camera's optical frame")

    def deactivate(self) -> None:
        stop_listening(self._tf_listener)
        self._tf_buffer = self._tf_listener = None

    def cleanup(self) -> None:
        self.deactivate()

    def locate(self, camera: str, frame: Frame, masks: Sequence[np.ndarray]) -> list[Located]:
        """Each mask's object on ``frame`` (an empty mask: none, status "not visible")."""
        feed = self._feeds[camera]
        began = time.perf_counter()
        try:
            depth = feed.registered_depth(frame, self.settings)
        except DepthError as exc:
            return [Located(None, f"{exc.reason}: {exc}", frame.frame_id) for _ in masks]
        info = frame.camera_info or feed.camera_info
        rotation, translation, frame_id = self._transform(frame.frame_id)
        out = []
        for mask in masks:
            if not mask.any():
                out.append(Located(None, "not_visible: the mask is empty", frame_id))
                continue
            try:
                obj = locate(mask, depth, info.k, self.settings)
            except DepthError as exc:
                feed.count_no_3d(exc.reason, str(exc))
                out.append(Located(None, f"{exc.reason}: {exc}", frame_id))
                continue
            if rotation is not None:
                obj = transformed(obj, rotation, translation)
            out.append(Located(obj, "", frame_id))
        with self._lock:
            self._objects += len(masks)
            self._seconds = time.perf_counter() - began
        return out

    def _transform(self, source: str) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        target = self.settings.target_frame
        if not target or source.lstrip("/") == target.lstrip("/") or self._tf_buffer is None:
            return None, None, source
        from rclpy.time import Time  # noqa: PLC0415

        try:
            stamped = self._tf_buffer.lookup_transform(target, source, Time())
        except Exception as exc:  # tf2's lookup, connectivity and extrapolation errors
            with self._lock:
                self._last_transform_problem = f"no transform from '{source}' to '{target}': {exc}"
            return None, None, source
        t, q = stamped.transform.translation, stamped.transform.rotation
        return quaternion_matrix([q.x, q.y, q.z, q.w]), np.array([t.x, t.y, t.z]), target

    def diagnostics(self) -> list[DiagnosticStatus]:
        if not self.enabled:
            return []
        with self._lock:
            objects, seconds, problem = self._objects, self._seconds, self._last_transform_problem
        level = DiagnosticStatus.WARN if problem or (self.settings.target_frame and self._tf_buffer is None) \
            else DiagnosticStatus.OK
        message = problem or self._tf_note
        return [DiagnosticStatus(
            level=level, name=f"{self._node.get_fully_qualified_name()}: 3-D", message=message,
            values=[KeyValue(key="target_frame", value=self.settings.target_frame),
                    KeyValue(key="transforms", value=self._tf_note),
                    KeyValue(key="objects_located", value=str(objects)),
                    KeyValue(key="last_step_seconds", value=f"{seconds:.4f}"),
                    KeyValue(key="last_transform_problem", value=problem)])]


def _point(v: Iterable[float]) -> Point:
    x, y, z = (float(c) for c in v)
    return Point(x=x, y=y, z=z)


def _vector(v: Iterable[float]) -> Vector3:
    x, y, z = (float(c) for c in v)
    return Vector3(x=x, y=y, z=z)


def _pose(obj: Object3D) -> Pose:
    qx, qy, qz, qw = (float(c) for c in obj.box_quaternion)
    return Pose(position=_point(obj.box_center), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def object3d_msg(located: Located, stamp_ns: int) -> Object3DMsg:
    """The ``Object3D`` message of one located object (point_count 0 and the reason when none)."""
    msg = Object3DMsg(header=header(stamp_ns, located.frame_id), status=located.status)
    obj = located.obj
    if obj is not None:
        msg.point_count = obj.point_count
        msg.centroid, msg.extent_center = _point(obj.centroid), _point(obj.extent_center)
        msg.extent, msg.box_pose, msg.box_size = _vector(obj.extent), _pose(obj), _vector(obj.box_size)
    return msg


def _colour(object_id: int) -> ColorRGBA:
    """A distinct, stable colour per object id (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((object_id * 0.618034) % 1.0, 0.8, 1.0)
    return ColorRGBA(r=r, g=g, b=b, a=0.6)


def markers_msg(objects: Sequence[tuple[int, str, Located]], stamp_ns: int, frame_id: str,
                gone: Iterable[int]) -> MarkerArray:
    """Box, centroid and label markers of the located objects; DELETE markers for ``gone`` ids."""
    out = MarkerArray()
    head = header(stamp_ns, frame_id)
    for object_id, label, located in objects:
        obj = located.obj
        if obj is None:
            continue
        head = header(stamp_ns, located.frame_id)
        colour = _colour(object_id)
        size = np.maximum(obj.box_size, 0.005)           # a flat object still shows as a thin box
        box = Marker(header=head, ns="box", id=object_id, type=Marker.CUBE, action=Marker.ADD, pose=_pose(obj),
                     scale=_vector(size), color=colour, lifetime=Duration())
        sphere = Marker(header=head, ns="centroid", id=object_id, type=Marker.SPHERE, action=Marker.ADD,
                        pose=Pose(position=_point(obj.centroid), orientation=Quaternion(w=1.0)),
                        scale=_vector([0.03] * 3), color=ColorRGBA(r=colour.r, g=colour.g, b=colour.b, a=1.0))
        text = Marker(header=head, ns="label", id=object_id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      pose=Pose(position=_point(obj.centroid), orientation=Quaternion(w=1.0)),
                      scale=Vector3(z=0.05), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
                      text=f"{object_id} {label}")
        out.markers.extend([box, sphere, text])
    for object_id in sorted(gone):
        out.markers.extend(Marker(header=header(stamp_ns, frame_id), ns=ns, id=object_id, action=Marker.DELETE)
                           for ns in MARKER_NAMESPACES)
    return out


class Outputs3D:
    """Markers and point cloud of each frame published for; remembers, per camera, which objects'
    markers are shown, so that one removed, reset, lost or without 3-D gets DELETE markers once."""

    def __init__(self) -> None:
        self._shown: dict[str, set[int]] = {}

    def messages(self, camera: str, objects: Sequence[tuple[int, str, Located]], stamp_ns: int,
                 frame_id: str) -> tuple[MarkerArray, PointCloud2]:
        """(markers, points) of ``objects`` (id, label, 3-D) on the frame stamped ``stamp_ns``;
        ``frame_id`` is the frame's, used when no object says where it is."""
        shown = {object_id for object_id, _, where in objects if where.obj is not None}
        gone = self._shown.get(camera, set()) - shown
        self._shown[camera] = shown
        frame_id = objects[0][2].frame_id if objects else frame_id
        return (markers_msg(objects, stamp_ns, frame_id, gone),
                points_msg([(i, w) for i, _, w in objects], stamp_ns, frame_id))


def points_msg(objects: Sequence[tuple[int, Located]], stamp_ns: int, frame_id: str) -> PointCloud2:
    """Every located object's points in one unordered cloud with an ``object_id`` field."""
    chunks = []
    for object_id, located in objects:
        if located.obj is None:
            continue
        frame_id = located.frame_id
        pts = located.obj.points
        chunk = np.empty(pts.shape[0], _POINT_DTYPE)
        chunk["x"], chunk["y"], chunk["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
        chunk["object_id"] = object_id
        chunks.append(chunk)
    cloud = np.concatenate(chunks) if chunks else np.empty(0, _POINT_DTYPE)
    msg = PointCloud2(header=header(stamp_ns, frame_id), height=1, width=int(cloud.shape[0]),
                      fields=POINT_FIELDS, is_bigendian=False, point_step=_POINT_DTYPE.itemsize,
                      row_step=_POINT_DTYPE.itemsize * int(cloud.shape[0]), is_dense=True)
    msg.data = cloud.tobytes()
    return msg
