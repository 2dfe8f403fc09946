"""Parameter declaration and validation (in-process nodes, no other processes), and the YAML."""
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from unipixel_ros.frames import WindowLimits
from unipixel_ros.ros.conversions import ConverterUnavailable, make_converter
from unipixel_ros.ros.node import UniPixelNode
from unipixel_ros.ros.params import CAMERA_PARAMS, NODE_PARAMS, ParameterError, camera_param, load_config
from unipixel_ros.ros.qos import QosError, qos_profile

YAML_PATH = Path(__file__).resolve().parents[1] / "config" / "unipixel.yaml"


@pytest.fixture(scope="module")
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def make_node(ros_context):
    made = []

    def make(**params) -> UniPixelNode:
        overrides = [Parameter(name, value=value) for name, value in params.items()]
        # Camera ingest only: these tests are about the node's own parameters and transitions.
        node = UniPixelNode(f"params_test_{len(made)}", context=ros_context,
                            parameter_overrides=overrides, components=())
        made.append(node)
        return node

    yield make
    for node in made:
        node.destroy_node()


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def yaml_params() -> dict:
    return flatten(yaml.safe_load(YAML_PATH.read_text())["/**"]["ros__parameters"])


def test_yaml_lists_every_parameter_with_its_default() -> None:
    params = yaml_params()
    cameras = params["cameras"]
    declared = {s.name for s in NODE_PARAMS} | {camera_param(c, s.name) for c in cameras for s in CAMERA_PARAMS}
    assert set(params) == declared
    for spec in NODE_PARAMS:
        if spec.name != "cameras":
            assert params[spec.name] == spec.default, spec.name


def test_yaml_has_a_comment_before_every_parameter() -> None:
    lines = [line.strip() for line in YAML_PATH.read_text().splitlines()]
    for i, line in enumerate(lines):
        if ":" in line and not line.startswith("#") and not line.endswith(":"):
            before = next(prev for prev in reversed(lines[:i]) if prev)
            assert before.startswith("#"), f"no comment before '{line}'"


def test_yaml_configures(make_node) -> None:
    node = make_node(**yaml_params())
    config = load_config(node)
    assert config.window == WindowLimits(10.0, 64, 512 * 1024 * 1024, 1)
    (front,) = config.cameras
    assert (front.name, front.subscribed_topic, front.camera_info_topic) == (
        "front", "front/image_raw", "front/camera_info")


def test_defaults_and_derived_topics(make_node) -> None:
    node = make_node(cameras=["left", "right"], **{"cameras.right.transport": "compressed",
                                                   "window.duration_s": 5})
    config = load_config(node)
    left, right = config.cameras
    assert left.subscribed_topic == "left/image_raw" and left.camera_info_topic == ""
    assert right.subscribed_topic == "right/image_raw/compressed"
    assert config.window.duration_s == 5.0 and isinstance(config.window.duration_s, float)
    assert (config.qos.input, config.qos.output) == ("sensor_data", "reliable")
    assert node.has_parameter("cameras.right.camera_info_topic")      # declared at configure


@pytest.mark.parametrize("params, names", [
    ({"cameras": []}, ["cameras"]),
    ({"cameras": ["front", "front"]}, ["cameras"]),
    ({"cameras": ["9cam"]}, ["cameras"]),
    ({"window.duration_s": -1.0}, ["window.duration_s"]),
    ({"window.duration_s": "long"}, ["window.duration_s"]),
    ({"window.max_frames": 0}, ["window.max_frames"]),
    ({"window.max_bytes": -5}, ["window.max_bytes"]),
    ({"window.decimation": 1.5}, ["window.decimation"]),
    ({"qos.input": "fast"}, ["qos.input"]),
    ({"qos.output_depth": 0}, ["qos.output_depth"]),
    ({"cameras.front.transport": "h264"}, ["cameras.front.transport"]),
    ({"cameras.front.image_topic": "front camera"}, ["cameras.front.image_topic"]),
    ({"cameras.front.camera_info_topic": "info//x"}, ["cameras.front.camera_info_topic"]),
    ({"conversion.backend": "opencv"}, ["conversion.backend"]),
    ({"diagnostics.period_s": 0.0}, ["diagnostics.period_s"]),
    ({"cameras": [], "qos.input": "x", "window.max_frames": -1},
     ["cameras", "window.max_frames", "qos.input"]),
])
def test_invalid_parameters_are_named(make_node, params: dict, names: list[str]) -> None:
    node = make_node(**({"cameras": ["front"]} | params))
    with pytest.raises(ParameterError) as err:
        load_config(node)
    assert err.value.names == names
    for name in names:
        assert f"{name}: " in str(err.value)


def test_configure_fails_cleanly_and_can_be_retried(make_node, capfd) -> None:
    node = make_node(cameras=["front"], **{"window.max_frames": 0})
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "window.max_frames" in capfd.readouterr().err
    assert node.feeds == {} and node.config is None
    node.set_parameters([Parameter("window.max_frames", value=3)])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert list(node.feeds) == ["front"] and node.feeds["front"].window.limits.max_frames == 3
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.feeds == {}


def test_required_cv_bridge_that_is_missing_fails_configure(make_node, capfd) -> None:
    try:
        make_converter("cv_bridge")
        pytest.skip("a working cv_bridge is installed here")
    except ConverterUnavailable:
        pass
    node = make_node(cameras=["front"], **{"conversion.backend": "cv_bridge"})
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "conversion.backend" in capfd.readouterr().err


def test_named_qos_profiles() -> None:
    sensor = qos_profile("sensor_data", 3)
    assert (sensor.reliability, sensor.durability, sensor.depth) == (
        ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE, 3)
    assert qos_profile("reliable", 7).reliability == ReliabilityPolicy.RELIABLE
    assert qos_profile("transient_local", 1).durability == DurabilityPolicy.TRANSIENT_LOCAL
    with pytest.raises(QosError) as err:
        qos_profile("fast", 1)
    assert err.value.field == "name"
    with pytest.raises(QosError) as err:
        qos_profile("reliable", 0)
    assert err.value.field == "depth"


def test_an_empty_camera_list_says_that_no_camera_is_configured(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    cameras: []\n")
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(params)], context=context)
    try:
        node = UniPixelNode("empty_cameras_test", context=context, components=())
        try:
            assert node.get_parameter("cameras").value is None     # how a YAML [] arrives
            with pytest.raises(ParameterError) as err:
                load_config(node)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert err.value.names == ["cameras"]
    assert "no camera is configured" in str(err.value)
    assert "cameras: [front]" in str(err.value)                    # says how to configure one


def test_a_declared_empty_camera_list_says_the_same(make_node) -> None:
    with pytest.raises(ParameterError) as err:
        load_config(make_node(cameras=[]))
    assert "no camera is configured" in str(err.value)


@pytest.mark.ros
def test_configure_names_bad_node_and_model_parameters_in_one_error() -> None:
    from helpers.perception_client import NodeProcess

    node = NodeProcess("/params_one_pass", {"cameras": ["front"], "window.max_frames": -1,
                                            "model.dtype": "bogus"})
    try:
        assert node.proc.wait(60) == 1
        failed = [line for line in node.log().splitlines() if "configure failed" in line]
    finally:
        node.stop()
    assert len(failed) == 1, failed
    assert "window.max_frames: " in failed[0] and "model.dtype: " in failed[0]
