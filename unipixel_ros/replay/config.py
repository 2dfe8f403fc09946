"""The node's parameter file, read and validated by the node's own readers.

:class:`ParameterFile` offers the few methods of ``rclpy.node.Node`` that
:func:`~unipixel_ros.ros.params.load_config` and
:func:`~unipixel_ros.ros.perception.read_perception_config` call (declare, has, get,
resolve a topic name), backed by the YAML file as rclpy parses it (``/**`` and the node's
own name apply) plus the replay's overrides (its cameras). So a parameter the node would
refuse is refused here too, with the node's message.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.expand_topic_name import expand_topic_name
from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

from unipixel_ros.replay.errors import ReplayError
from unipixel_ros.ros.params import NodeConfig, ParameterError, camera_param, declare_node_parameters, load_config
from unipixel_ros.ros.perception import PerceptionConfig, read_perception_config

NODE_NAME = "unipixel"


@dataclass(frozen=True)
class _Value:
    value: Any


class ParameterFile:
    """Parameters from a node parameter file, as a node declares and reads them."""

    def __init__(self, path: Path | None, overrides: dict[str, Any], node_name: str = NODE_NAME,
                 namespace: str = "/") -> None:
        self.node_name, self.namespace = node_name, namespace
        self._given: dict[str, Any] = {}
        if path is not None:
            if not Path(path).is_file():
                raise ReplayError(f"parameter file {path} does not exist")
            fqn = f"{namespace.rstrip('/')}/{node_name}"
            try:
                parsed = parameter_dict_from_yaml_file(str(path), use_wildcard=True, target_nodes=[fqn])
            except Exception as exc:  # rclpy raises RuntimeError / yaml errors for a bad file
                raise ReplayError(f"parameter file {path}: {exc}") from exc
            self._given = {name: parameter_value_to_python(p.value) for name, p in parsed.items()}
        self._given.update(overrides)
        self._declared: dict[str, Any] = {}

    def has_parameter(self, name: str) -> bool:
        return name in self._declared

    def declare_parameter(self, name: str, default: Any, descriptor: Any = None) -> _Value:
        self._declared[name] = self._given.get(name, default)
        return _Value(self._declared[name])

    def get_parameter(self, name: str) -> _Value:
        return _Value(self._declared[name])

    def resolve_topic_name(self, topic: str) -> str:
        return expand_topic_name(topic, self.node_name, self.namespace)


@dataclass(frozen=True)
class ReplayConfig:
    node: NodeConfig
    perception: PerceptionConfig
    parameters: ParameterFile            # resolves the node's topic names


@dataclass(frozen=True)
class CameraTopics:
    """A replayed camera's recorded topics ("" = not recorded / not replayed)."""

    image: str
    transport: str                  # "raw" or "compressed"
    info: str = ""
    depth: str = ""
    depth_info: str = ""


def camera_overrides(cameras: dict[str, CameraTopics]) -> dict[str, Any]:
    """Each camera's recorded topics as the node's ``cameras.<name>.*`` parameters."""
    out: dict[str, Any] = {"cameras": list(cameras)}
    for name, t in cameras.items():
        base = t.image.removesuffix("/compressed") if t.transport == "compressed" else t.image
        out[camera_param(name, "image_topic")] = base
        out[camera_param(name, "transport")] = t.transport
        out[camera_param(name, "camera_info_topic")] = t.info
        out[camera_param(name, "depth_topic")] = t.depth
        out[camera_param(name, "depth_camera_info_topic")] = t.depth_info
    return out


def read_config(path: Path | None, cameras: dict[str, CameraTopics], node_name: str = NODE_NAME,
                namespace: str = "/", overrides: dict[str, Any] | None = None) -> ReplayConfig:
    """Validate the parameter file with ``overrides`` (``-p``) and the replay's cameras; ReplayError
    names each bad parameter."""
    params = ParameterFile(path, {**(overrides or {}), **camera_overrides(cameras)}, node_name, namespace)
    declare_node_parameters(params)
    try:
        node = load_config(params, also=(read_perception_config,))
        perception = read_perception_config(params)
    except ParameterError as exc:
        raise ReplayError(f"parameter file {path}: {exc}") from exc
    return ReplayConfig(node, perception, params)
