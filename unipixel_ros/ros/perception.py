"""The model side of the node: queries, kept objects, tracking and clicks as one component.

They share one model (:class:`ModelHost`) and one set of per-camera memory banks
(:class:`ObjectStore`), so they are built together at configure from the ``model.*``,
``query.*``, ``memory.*``, ``tracking.*`` and ``clicks.*`` parameters (declared, with
their defaults and descriptions, in :mod:`unipixel_ros.ros.params`). The model loads
in the background from configure on (see :mod:`unipixel_ros.ros.model_host`), is freed
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

from unipixel_ros.decoders import BACKENDS, DECODER_PRECISIONS
from unipixel_ros.object_store import ObjectStore
from unipixel_ros.prompts import RequestLimits
from unipixel_ros.ros.clicks import CLICK_MODES, ClickHandler, ClickSettings
from unipixel_ros.ros.component import NodeContext
from unipixel_ros.ros.memory_services import MemoryServices
from unipixel_ros.ros.model_host import (
    BUSY_POLICIES,
    MAX_QUEUED,
    ModelHost,
    ModelSettings,
    PipelineLoader,
    load_pipeline,
)
from unipixel_ros.ros.objects3d_output import Locator
from unipixel_ros.ros.params import ParameterError
from unipixel_ros.ros.qos import qos_profile
from unipixel_ros.ros.query_server import QueryServer, QuerySettings
from unipixel_ros.ros.tracking import CatchUp, Tracker

DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)\Z")
# Clicks come from GUI tools (rqt_image_view, RViz) that publish reliably, a few at a time.
CLICK_QOS = QoSProfile(depth=10)

@dataclass(frozen=True)
class PerceptionConfig:
    model: ModelSettings
    busy_policy: str
    max_queued: int
    query: QuerySettings
    max_objects: int
    max_frames_per_object: int
    tracking_rate_hz: float
    catch_up: CatchUp
    clicks: ClickSettings


class _Reader:
    """Reads parameters (declared with the node's, in ``params.NODE_PARAMS``) and collects
    every problem, each naming its parameter."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.problems: list[tuple[str, str]] = []

    def value(self, name: str) -> Any:
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

    def flag(self, name: str) -> bool:
        value = self.value(name)
        if not isinstance(value, bool):
            self.problems.append((name, f"must be true or false, got {value!r}"))
            return False
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

    def integer(self, name: str, minimum: int, maximum: int | None = None) -> int:
        value = self.value(name)
        if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
                or (maximum is not None and value > maximum)):
            bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            self.problems.append((name, f"must be an integer {bounds}, got {value!r}"))
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
                            decoder_backend=r.choice("model.decoder_backend", BACKENDS),
                            decoder_dir=r.text("model.decoder_dir"),
                            decoder_precision=r.choice("model.decoder_precision", DECODER_PRECISIONS),
                            rebuild_decoder=r.flag("model.rebuild_decoder"),
                            compile=r.flag("model.compile")),
        busy_policy=r.choice("query.busy_policy", BUSY_POLICIES),
        max_queued=r.integer("query.max_queued", 0, MAX_QUEUED),
        query=QuerySettings(window_seconds=r.number("query.window_seconds", 0.0, strict=True),
                            max_frames=r.integer("query.max_frames", 1),
                            prompt_tolerance_s=r.number("query.prompt_stamp_tolerance_s", 0.0),
                            max_frame_age_s=r.number("query.max_frame_age_s", 0.0),
                            limits=RequestLimits(max_prompts=r.integer("query.max_prompts", 1),
                                                 max_text_tokens=r.integer("query.max_text_tokens", 1),
                                                 max_prompt_pixels=r.integer("query.max_prompt_pixels", 1))),
        max_objects=r.integer("memory.max_objects", 1),
        max_frames_per_object=r.integer("memory.max_frames_per_object", 1),
        tracking_rate_hz=r.number("tracking.rate_hz", 0.0),
        catch_up=CatchUp(max_frames=r.integer("tracking.catch_up_frames", 0),
                         rate_hz=r.number("tracking.rate_hz", 0.0)),
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
        self.host = ModelHost(config.model, config.busy_policy, config.max_queued, node.get_logger(), loader)
        self.store = ObjectStore(context.feeds, config.max_objects, config.max_frames_per_object,
                                 timelines={name: feed.window for name, feed in context.feeds.items()})
        output_qos = qos_profile(context.config.qos.output, context.config.qos.output_depth)
        self.locator = Locator(node, context.feeds, context.config.depth)
        self.tracker = Tracker(node, context.feeds, self.store, self.host, config.tracking_rate_hz, output_qos,
                               locator=self.locator, catch_up=config.catch_up)
        self.query_server = QueryServer(node, context.feeds, self.store, self.host, config.query,
                                        on_remembered=self.tracker.publish_stored, locator=self.locator)
        self.memory_services = MemoryServices(node, self.store, on_removed=self.tracker.refresh)
        self.clicks = ClickHandler(node, context.feeds, self.store, self.host, self.tracker, config.clicks,
                                   CLICK_QOS)
        self._parts = (self.locator, self.tracker, self.memory_services, self.query_server, self.clicks)
        self.host.start_loading()

    def activate(self) -> None:
        self.host.start_loading()            # again after a deactivate freed the model
        for part in self._parts:
            part.activate()

    def deactivate(self) -> None:
        self.host.unload()                   # cancels a running query, which then answers "canceled"
        for part in reversed(self._parts):
            part.deactivate()

    def cleanup(self) -> None:
        self.host.unload()
        for part in reversed(self._parts):
            part.cleanup()

    def diagnostics(self) -> list[DiagnosticStatus]:
        stats = self.host.stats()
        settings = self.host.settings
        if stats.loaded:
            level = DiagnosticStatus.OK
            message = f"{'busy: ' + stats.running if stats.running else 'idle'}, {stats.queued} waiting"
        elif stats.load_error:
            level, message = DiagnosticStatus.ERROR, f"failed to load: {stats.load_error}"
        elif stats.running:
            level, message = DiagnosticStatus.OK, f"loading ({stats.load_seconds:.0f} s so far)"
        else:
            level, message = DiagnosticStatus.WARN, "not loaded (inactive)"
        model = DiagnosticStatus(
            level=level, name=f"{self._node.get_fully_qualified_name()}: model", message=message,
            values=[KeyValue(key="model", value=settings.model_id), KeyValue(key="device", value=settings.device),
                    KeyValue(key="dtype", value=settings.dtype),
                    KeyValue(key="decoder_backend", value=settings.decoder_backend),
                    KeyValue(key="load_seconds", value=f"{stats.load_seconds:.1f}"),
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
