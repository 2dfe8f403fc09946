"""Every node parameter: name, default, description, declaration and validation.

This module is the one place that knows the parameters. Adding one means a
:class:`ParamSpec` entry here, a field in the config it belongs to, a line in
``config/unipixel.yaml`` (a test keeps the YAML and this table in step).

Parameters are declared with dynamic typing and checked here, so that a YAML
``window.duration_s: 5`` (an integer) is accepted where a float is expected,
and every mistake is reported together, each naming its parameter, when the
node configures.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from unipixel_ros.frames import WindowLimits, WindowLimitsError
from unipixel_ros.objects3d import DepthSettings, DepthSettingsError
from unipixel_ros.ros.conversions import CONVERTER_BACKENDS
from unipixel_ros.ros.qos import QOS_NAMES, QosError, qos_profile

TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
NO_CAMERA = ("no camera is configured: list the camera names, e.g. 'cameras: [front]' in the "
             "parameters file or '-p cameras:=[front]', and give each one its "
             "cameras.<name>.image_topic (default <name>/image_raw)")
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as users see it: ``ros2 param describe`` shows the description."""

    name: str
    default: Any
    description: str


NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("cameras", [], "Names of the cameras to subscribe to; each one is configured "
              "by the cameras.<name>.* parameters."),
    ParamSpec("window.duration_s", 10.0, "Per-camera window: the newest frame's stamp minus the "
              "oldest's is at most this [s]."),
    ParamSpec("window.max_frames", 64, "Per-camera window: at most this many frames."),
    ParamSpec("window.max_bytes", 512 * 1024 * 1024, "Per-camera window: decoded RGB images "
              "take at most this many bytes (H*W*3 each)."),
    ParamSpec("window.decimation", 1, "Keep one frame in every N received (1 = keep all); "
              "skipped frames are not decoded."),
    ParamSpec("qos.input", "sensor_data", f"QoS of camera subscriptions: {', '.join(QOS_NAMES)}."),
    ParamSpec("qos.input_depth", 5, "History depth of camera subscriptions."),
    ParamSpec("qos.output", "reliable", f"QoS of published results: {', '.join(QOS_NAMES)}."),
    ParamSpec("qos.output_depth", 10, "History depth of published results."),
    ParamSpec("conversion.backend", "auto", "Image conversion: auto (cv_bridge when a working "
              "one is installed, else builtin), builtin, cv_bridge."),
    ParamSpec("auto_start", True, "Configure and activate at start-up instead of waiting for "
              "a lifecycle manager."),
    ParamSpec("diagnostics.period_s", 1.0, "Period of the /diagnostics status [s]."),
    # The model side; read and validated by unipixel_ros.ros.perception.
    ParamSpec("model.id", "synthetic", "UniPixel checkpoint: a local directory, a Hugging Face id "
              "(PolyU-ChenLab/UniPixel-3B or -7B), synthetic (shipped, trained on synthetic shapes only) "
              "or tiny (built-in, untrained: noise masks)."),
    ParamSpec("model.device", "auto", "auto (cuda when available, else cpu), cpu, cuda or cuda:N."),
    ParamSpec("model.dtype", "auto", "auto (bfloat16 on a GPU, float32 on the CPU), float32, "
              "bfloat16 or float16."),
    ParamSpec("model.decoder_backend", "torch", "SAM 2 mask decoder: torch, onnxruntime or "
              "tensorrt (falls back to torch when the requested one cannot run)."),
    ParamSpec("model.decoder_dir", "", "Folder of the exported decoder (mask_decoder_<precision>.onnx "
              "and .engine); empty = ~/.cache/unipixel_ros/decoders/<model>."),
    ParamSpec("model.decoder_precision", "fp32", "Precision of the exported decoder: fp32 or fp16."),
    ParamSpec("model.rebuild_decoder", False, "Export the ONNX file / build the TensorRT engine "
              "when it is missing or was made for other weights, TensorRT or GPU (instead of "
              "falling back to torch)."),
    ParamSpec("model.compile", False, "Decode over a static KV cache with the decode step compiled by "
              "torch.compile (CUDA graphs on a GPU): faster tokens after a one-off compile on the first "
              "query; false = the eager decode. Meant for GPUs; on the CPU inductor needs a C compiler."),
    ParamSpec("query.window_seconds", 4.0, "Default query window: frames stamped within this "
              "many seconds of the camera's newest frame [s]."),
    ParamSpec("query.max_frames", 16, "Default query window: at most this many (newest) frames."),
    ParamSpec("query.prompt_stamp_tolerance_s", 0.05, "A visual prompt's stamp matches the "
              "nearest window frame within this tolerance [s]."),
    ParamSpec("query.max_frame_age_s", 0.0, "Refuse to answer when the camera's newest frame is "
              "older than this on the node clock [s]; 0 = no limit."),
    ParamSpec("query.busy_policy", "queue", "While the model is busy, new queries and clicks "
              "queue (wait in line) or reject (refused at once)."),
    ParamSpec("query.max_queued", 2, "Queue policy: at most this many requests wait (0..4); "
              "more are refused."),
    ParamSpec("query.max_prompts", 16, "A request with more visual prompts than this is refused."),
    ParamSpec("query.max_text_tokens", 1024, "A request whose text is longer than this many tokens "
              "(the model's tokenizer counts them) is refused before any model work."),
    ParamSpec("query.max_prompt_pixels", 4 * 3840 * 2160, "A request whose mask prompts hold more "
              "pixels than this together is refused before they are decoded (default: four 4K images)."),
    ParamSpec("memory.max_objects", 32, "Objects kept per camera; adding beyond this is refused."),
    ParamSpec("memory.max_frames_per_object", 64, "Per kept object, masks of at most this many "
              "recent frames are held."),
    ParamSpec("tracking.rate_hz", 5.0, "Kept objects are tracked on the newest frame at this "
              "rate [Hz]; 0 = no tracking."),
    ParamSpec("tracking.catch_up_frames", 50, "An object left behind (its query took seconds, or "
              "requests held the model) is first tracked through the held frames it missed, spaced "
              "at tracking.rate_hz, going back at most this many from the newest; 0 = it jumps to "
              "the newest frame."),
    ParamSpec("clicks.mode", "point", "Click to segment with one click (point) or with two "
              "clicks as opposite box corners (box)."),
    ParamSpec("clicks.box_timeout_s", 10.0, "Box mode: the second corner must follow within "
              "this [s]."),
    ParamSpec("clicks.clicked_point_topic", "/clicked_point", "geometry_msgs/PointStamped clicks "
              "(RViz Publish Point); empty = not subscribed."),
    ParamSpec("depth.max_stamp_offset_s", 0.05, "A colour frame is paired with the depth image nearest "
              "in stamp within this [s]; none within it = no 3-D for that frame."),
    ParamSpec("depth.min_m", 0.1, "Depth below this is no measurement [m]."),
    ParamSpec("depth.max_m", 10.0, "Depth above this is no measurement [m]."),
    ParamSpec("depth.band_m", 0.15, "Points under a mask farther than this from the median depth of the "
              "mask are outliers (edge bleed onto the background) [m]."),
    ParamSpec("depth.min_points", 20, "An object with fewer valid depth points has no 3-D on that frame."),
    ParamSpec("depth.target_frame", "", "Frame the 3-D results are published in (through tf2); empty = "
              "each camera's optical frame."),
)

CAMERA_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("image_topic", "", "Base image topic (relative names resolve in the node's "
              "namespace); empty = <name>/image_raw."),
    ParamSpec("transport", "raw", "raw: sensor_msgs/Image on image_topic; compressed: "
              "sensor_msgs/CompressedImage (JPEG/PNG) on image_topic/compressed."),
    ParamSpec("camera_info_topic", "", "sensor_msgs/CameraInfo topic stored with each frame; "
              "empty = none."),
    ParamSpec("depth_topic", "", "sensor_msgs/Image depth registered to the colour image (16UC1 mm or "
              "32FC1 m); empty = no depth, no 3-D."),
    ParamSpec("depth_camera_info_topic", "", "CameraInfo of the depth image (needed when its size differs "
              "from the colour image's); empty = the colour calibration."),
)


def camera_param(camera: str, key: str) -> str:
    """Full parameter name of a per-camera setting, e.g. ``cameras.front.transport``."""
    return f"cameras.{camera}.{key}"


class ParameterError(ValueError):
    """One or more parameters are invalid; ``names`` lists them, the message says why."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)           # (name, why), so callers can merge reports
        self.names = [name for name, _ in problems]
        super().__init__("invalid parameters: " + "; ".join(f"{n}: {why}" for n, why in problems))


@dataclass(frozen=True)
class CameraConfig:
    name: str
    image_topic: str             # base topic, as configured (relative or absolute)
    transport: str
    camera_info_topic: str       # empty = none
    depth_topic: str = ""        # registered depth image; empty = none
    depth_camera_info_topic: str = ""   # its CameraInfo; empty = the colour one

    @property
    def subscribed_topic(self) -> str:
        """What is subscribed to: image_transport's layout, compressed under ``<base>/compressed``."""
        return f"{self.image_topic}/compressed" if self.transport == "compressed" else self.image_topic


@dataclass(frozen=True)
class QosConfig:
    input: str
    input_depth: int
    output: str
    output_depth: int


@dataclass(frozen=True)
class NodeConfig:
    """Everything configure reads, validated; components get it instead of reading parameters."""

    cameras: tuple[CameraConfig, ...]
    window: WindowLimits
    qos: QosConfig
    converter_backend: str
    diagnostics_period_s: float
    depth: DepthSettings = DepthSettings()


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    return ParameterDescriptor(description=spec.description, dynamic_typing=True)


def _declare(node: Node, spec: ParamSpec, name: str | None = None) -> Any:
    name = name or spec.name
    if not node.has_parameter(name):
        node.declare_parameter(name, spec.default, _descriptor(spec))
    return node.get_parameter(name).value


def declare_node_parameters(node: Node) -> None:
    """Declare the fixed parameters (at construction, so they are listed before configure)."""
    for spec in NODE_PARAMS:
        _declare(node, spec)


def read_auto_start(node: Node) -> bool:
    value = node.get_parameter("auto_start").value
    if not isinstance(value, bool):
        raise ParameterError([("auto_start", f"must be true or false, got {value!r}")])
    return value


class _Checker:
    """Reads parameters and collects every problem instead of stopping at the first."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.problems: list[tuple[str, str]] = []

    def fail(self, name: str, why: str) -> None:
        self.problems.append((name, why))

    def get(self, name: str, spec: ParamSpec | None = None) -> Any:
        return _declare(self.node, spec, name) if spec else self.node.get_parameter(name).value

    def string(self, name: str, choices: Iterable[str] | None = None,
               spec: ParamSpec | None = None) -> str:
        value = self.get(name, spec)
        if not isinstance(value, str):
            self.fail(name, f"must be a string, got {value!r}")
            return ""
        if choices is not None and value not in choices:
            self.fail(name, f"'{value}' is not one of {', '.join(choices)}")
        return value

    def real(self, name: str) -> Any:
        """Integers become floats (YAML writes ``5`` for 5.0); other values pass through."""
        value = self.get(name)
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def topic(self, name: str, topic: str) -> None:
        try:
            self.node.resolve_topic_name(topic)
        except Exception as exc:  # rclpy raises its C layer's error types
            self.fail(name, f"'{topic}' is not a valid topic name ({exc})")


def _read_cameras(check: _Checker) -> tuple[CameraConfig, ...]:
    names = check.get("cameras")
    if names is None or names == []:    # a YAML ``[]`` or ``-p cameras:=[]`` arrives unset (None)
        check.fail("cameras", NO_CAMERA)
        return ()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        check.fail("cameras", f"must be a list of camera names, got {names!r}")
        return ()
    specs = {spec.name: spec for spec in CAMERA_PARAMS}
    cameras = []
    for name in dict.fromkeys(names):
        if not CAMERA_NAME.match(name):
            check.fail("cameras", f"camera name '{name}' must start with a letter and hold only "
                       "letters, digits and '_'")
            continue
        if names.count(name) > 1:
            check.fail("cameras", f"camera '{name}' is listed more than once")
        transport = check.string(camera_param(name, "transport"), TRANSPORTS, specs["transport"])
        image_topic = check.string(camera_param(name, "image_topic"), None, specs["image_topic"])
        info_topic = check.string(camera_param(name, "camera_info_topic"), None,
                                  specs["camera_info_topic"])
        depth_topic = check.string(camera_param(name, "depth_topic"), None, specs["depth_topic"])
        depth_info = check.string(camera_param(name, "depth_camera_info_topic"), None,
                                  specs["depth_camera_info_topic"])
        image_topic = image_topic or f"{name}/image_raw"
        check.topic(camera_param(name, "image_topic"), image_topic)
        for key, topic in (("camera_info_topic", info_topic), ("depth_topic", depth_topic),
                           ("depth_camera_info_topic", depth_info)):
            if topic:
                check.topic(camera_param(name, key), topic)
        cameras.append(CameraConfig(name, image_topic, transport, info_topic, depth_topic, depth_info))
    return tuple(cameras)


def _read_window(check: _Checker) -> WindowLimits | None:
    try:
        return WindowLimits(duration_s=check.real("window.duration_s"),
                            max_frames=check.get("window.max_frames"),
                            max_bytes=check.get("window.max_bytes"),
                            decimation=check.get("window.decimation"))
    except WindowLimitsError as exc:
        check.fail(f"window.{exc.field}", exc.why)
        return None


def _read_depth(check: _Checker) -> DepthSettings:
    try:
        return DepthSettings(min_m=check.real("depth.min_m"), max_m=check.real("depth.max_m"),
                             band_m=check.real("depth.band_m"), min_points=check.get("depth.min_points"),
                             max_stamp_offset_s=check.real("depth.max_stamp_offset_s"),
                             target_frame=check.get("depth.target_frame"))
    except DepthSettingsError as exc:
        check.fail(f"depth.{exc.field}", exc.why)
        return DepthSettings()


def _read_qos(check: _Checker, direction: str) -> tuple[str, int]:
    name, depth = check.string(f"qos.{direction}"), check.get(f"qos.{direction}_depth")
    try:
        if name:
            qos_profile(name, depth)
    except QosError as exc:
        check.fail(f"qos.{direction}" if exc.field == "name" else f"qos.{direction}_depth", str(exc))
    return name, depth


ParameterReader = Callable[[Node], object]
"""Reads and validates another group of parameters, raising :class:`ParameterError`."""


def load_config(node: Node, also: Iterable[ParameterReader] = ()) -> NodeConfig:
    """Read and validate every parameter; raises :class:`ParameterError` naming each bad one.

    ``also`` are the readers of the groups read elsewhere (the model side's): they run
    here too, so that one error names every bad parameter, not one group per attempt.
    """
    check = _Checker(node)
    cameras = _read_cameras(check)
    window = _read_window(check)
    depth = _read_depth(check)
    qos_in, qos_out = _read_qos(check, "input"), _read_qos(check, "output")
    backend = check.string("conversion.backend", CONVERTER_BACKENDS)
    period = check.real("diagnostics.period_s")
    if not (isinstance(period, float) and math.isfinite(period) and period > 0):
        check.fail("diagnostics.period_s", f"must be a finite number > 0, got {period!r}")
    for read in also:
        try:
            read(node)
        except ParameterError as exc:
            check.problems.extend(exc.problems)
    if check.problems:
        raise ParameterError(check.problems)
    return NodeConfig(cameras=cameras, window=window,
                      qos=QosConfig(qos_in[0], qos_in[1], qos_out[0], qos_out[1]),
                      converter_backend=backend, diagnostics_period_s=period, depth=depth)
