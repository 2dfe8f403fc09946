"""The model side of the node: queries, kept objects, tracking and clicks as one component.

They share one model (:class:`ModelHost`) and one set of per-camera memory banks
(:class:`ObjectStore`), so they are built together at configure from the ``model.*``,
``query.*``, ``memory.*``, ``tracking.*`` and ``clicks.*`` parameters. The model loads
at configure (a bad model id fails the transition with a message naming it), is freed
on deactivate and loaded again on activate.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile

from unipixel_ros.decoders.factory import BACKENDS
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.ros.clicks import CLICK_MODES, ClickHandler, ClickSettings
from unipixel_ros.ros.component import NodeContext
from unipixel_ros.ros.memory_services import MemoryServices
from unipixel_ros.ros.model_host import (
    BUSY_POLICIES,
    ModelHost,
    ModelLoadError,
    ModelSettings,
    PipelineLoader,
    load_pipeline,
)
from unipixel_ros.ros.params import ParameterError, ParamSpec
from unipixel_ros.ros.qos import qos_profile
from unipixel_ros.ros.query_server import QueryServer, QuerySettings
from unipixel_ros.ros.tracking import Tracker

DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)\Z")
# Clicks come from GUI tools (rqt_image_view, RViz) that publish reliably, a few at a time.
CLICK_QOS = QoSProfile(depth=10)

PERCEPTION_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("model.id", "PolyU-ChenLab/UniPixel-3B", "UniPixel checkpoint: a local directory or a "
              "Hugging Face id (PolyU-ChenLab/UniPixel-3B or -7B)."),
    ParamSpec("model.device", "auto", "Device: auto (cuda when available, else cpu), cpu, cuda, cuda:N."),
    ParamSpec("model.dtype", "auto", f"Weights dtype: {', '.join(DTYPES)} (auto: bfloat16 on GPU, "
              "float32 on CPU)."),
    ParamSpec("model.decoder_backend", "torch", f"SAM 2 mask decoder backend: {', '.join(BACKENDS)} "
              "(falls back to torch when the requested one cannot run)."),
    ParamSpec("query.window_seconds", 4.0, "Default window of a query: frames stamped within this "
              "many seconds of the camera's newest frame [s]."),
    ParamSpec("query.max_frames", 16, "Default window of a query: at most this many (newest) frames."),
    ParamSpec("query.prompt_stamp_tolerance_s", 0.05, "A visual prompt's stamp matches the nearest "
              "window frame within this tolerance [s]."),
    ParamSpec("query.max_frame_age_s", 0.0, "Refuse to answer when the camera's newest frame is "
              "older than this on the node clock [s]; 0 = no limit."),
    ParamSpec("query.busy_policy", "queue", f"While the model is busy, new queries and clicks "
              f"{' or '.join(BUSY_POLICIES)}: queue waits in line, reject refuses at once."),
    ParamSpec("query.max_queued", 2, "Queue policy: at most this many requests wait; more are refused."),
    ParamSpec("memory.max_objects", 32, "Objects kept per camera; adding beyond this is refused."),
    ParamSpec("memory.max_frames_per_object", 64, "Per kept object, masks of at most this many recent "
              "frames are held."),
    ParamSpec("tracking.rate_hz", 5.0, "Kept objects are tracked on the newest frame at this rate "
              "[Hz]; 0 = no tracking."),
    ParamSpec("clicks.mode", "point", f"Click to segment with one click ({CLICK_MODES[0]}) or with "
              f"two clicks as opposite box corners ({CLICK_MODES[1]})."),
    ParamSpec("clicks.box_timeout_s", 10.0, "Box mode: the second corner must follow within this [s]."),
    ParamSpec("clicks.clicked_point_topic", "/clicked_point", "geometry_msgs/PointStamped clicks "
              "(RViz Publish Point); empty = not subscribed."),
)


@dataclass(frozen=True)
class PerceptionConfig:
    model: ModelSettings
    busy_policy: str
    max_queued: int
    query: QuerySettings
    max_objects: int
    max_frames_per_object: int
    tracking_rate_hz: float
    clicks: ClickSettings


class _Reader:
    """Reads the parameters above and collects every problem, each naming its parameter."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.problems: list[tuple[str, str]] = []
        self.specs = {spec.name: spec for spec in PERCEPTION_PARAMS}

    def value(self, name: str) -> Any:
        if not self.node.has_parameter(name):
            self.node.declare_parameter(name, self.specs[name].default)
        return self.node.get_parameter(name).value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.value(name)
        if value not in choices:
            self.problems.append((name, f"{value!r} is not one of {', '.join(choices)}"))
        return value

    def text(self, name: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.value(name)
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            self.problems.append((name, f"must be {what or 'a string'}, got {value!r}"))
            return ""
        return value

    def number(self, name: str, minimum: float, strict: bool = False) -> float:
        value = self.value(name)
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > minimum if strict else value >= minimum))
        if not ok:
            self.problems.append((name, f"must be a finite number {'>' if strict else '>='} {minimum:g}, "
                                        f"got {value!r}"))
            return float(minimum)
        return float(value)

    def integer(self, name: str, minimum: int) -> int:
        value = self.value(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.append((name, f"must be an integer >= {minimum}, got {value!r}"))
            return minimum
        return value


def read_perception_config(node: Node) -> PerceptionConfig:
    """Read and validate the model-side parameters; raises ParameterError naming each bad one."""
    r = _Reader(node)
    model_id = r.text("model.id")
    if not model_id.strip():
        r.problems.append(("model.id", "must name a checkpoint directory or a Hugging Face id"))
    config = PerceptionConfig(
        model=ModelSettings(model_id=model_id,
                            device=r.text("model.device", _DEVICE, "auto, cpu, cuda or cuda:N"),
                            dtype=r.choice("model.dtype", DTYPES),
                            decoder_backend=r.choice("model.decoder_backend", BACKENDS)),
        busy_policy=r.choice("query.busy_policy", BUSY_POLICIES),
        max_queued=r.integer("query.max_queued", 0),
        query=QuerySettings(window_seconds=r.number("query.window_seconds", 0.0, strict=True),
                            max_frames=r.integer("query.max_frames", 1),
                            prompt_tolerance_s=r.number("query.prompt_stamp_tolerance_s", 0.0),
                            max_frame_age_s=r.number("query.max_frame_age_s", 0.0)),
        max_objects=r.integer("memory.max_objects", 1),
        max_frames_per_object=r.integer("memory.max_frames_per_object", 1),
        tracking_rate_hz=r.number("tracking.rate_hz", 0.0),
        clicks=ClickSettings(mode=r.choice("clicks.mode", CLICK_MODES),
                             box_timeout_s=r.number("clicks.box_timeout_s", 0.0, strict=True),
                             clicked_point_topic=r.text("clicks.clicked_point_topic")))
    if r.problems:
        raise ParameterError(r.problems)
    return config


class Perception:
    """Node component: the model host, the kept objects and the parts that use them.

    Its constructor is the component factory listed in ``node.COMPONENTS``; tests pass
    ``loader`` to run the node on a pipeline double.
    """

    def __init__(self, context: NodeContext, loader: PipelineLoader = load_pipeline) -> None:
        node, config = context.node, read_perception_config(context.node)
        self._node = node
        self._model_id = config.model.model_id
        self.host = ModelHost(config.model, config.busy_policy, config.max_queued, node.get_logger().warning,
                              loader)
        self.store = ObjectStore(context.feeds, config.max_objects, config.max_frames_per_object)
        output_qos = qos_profile(context.config.qos.output, context.config.qos.output_depth)
        self.tracker = Tracker(node, context.feeds, self.store, self.host, config.tracking_rate_hz, output_qos)
        self.query_server = QueryServer(node, context.feeds, self.store, self.host, config.query,
                                        on_remembered=self.tracker.publish_stored)
        self.memory_services = MemoryServices(node, self.store, on_removed=self.tracker.refresh)
        self.clicks = ClickHandler(node, context.feeds, self.store, self.host, self.tracker, config.clicks,
                                   CLICK_QOS)
        self._parts = (self.tracker, self.memory_services, self.query_server, self.clicks)
        self._load()

    def _load(self) -> None:
        if self.host.loaded:
            return
        settings = self.host.settings
        self._node.get_logger().info(f"loading model '{settings.model_id}' (device {settings.device}, "
                                     f"dtype {settings.dtype}, decoder {settings.decoder_backend})")
        try:
            self.host.load()
        except ModelLoadError as exc:
            raise ParameterError([("model.id", str(exc))]) from exc

    def activate(self) -> None:
        self._load()
        for part in self._parts:
            part.activate()

    def deactivate(self) -> None:
        for part in reversed(self._parts):
            part.deactivate()
        self.host.unload()

    def cleanup(self) -> None:
        for part in reversed(self._parts):
            part.cleanup()
        self.host.unload()

    def diagnostics(self) -> list[DiagnosticStatus]:
        stats = self.host.stats()
        model = DiagnosticStatus(
            level=DiagnosticStatus.OK if stats.loaded else DiagnosticStatus.WARN,
            name=f"{self._node.get_name()}: model",
            message=(f"{'busy: ' + stats.running if stats.running else 'idle'}, {stats.queued} waiting"
                     if stats.loaded else "not loaded"),
            values=[KeyValue(key="model", value=self._model_id),
                    KeyValue(key="device", value=self.host.settings.device),
                    KeyValue(key="requests_served", value=str(stats.served)),
                    KeyValue(key="requests_refused", value=str(stats.refused)),
                    KeyValue(key="last_request_s", value=f"{stats.last_request_s:.3f}"),
                    *_gpu_memory()])
        return [model, *(s for part in self._parts for s in part.diagnostics())]


def _gpu_memory() -> list[KeyValue]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [KeyValue(key="gpu_memory_allocated_mib", value=f"{torch.cuda.memory_allocated() / 2**20:.0f}"),
            KeyValue(key="gpu_memory_reserved_mib", value=f"{torch.cuda.memory_reserved() / 2**20:.0f}")]
