"""The launch files, read statically (launch/launch_ros exist only on a full ROS 2 install),
and their parameter files, given to a real node process."""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import yaml

from unipixel_ros.ros.params import CAMERA_PARAMS, NODE_PARAMS, camera_param

ROOT = Path(__file__).resolve().parents[1]
MAIN_LAUNCH = ROOT / "launch" / "unipixel.launch.py"
EXAMPLE_LAUNCH = ROOT / "launch" / "two_cameras.launch.py"
REQUIRED_ARGUMENTS = {"namespace", "cameras", "model", "device", "dtype", "decoder_backend", "window_seconds",
                      "params_file"}


def module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned a literal at module level")


def calls(tree: ast.Module, function: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == function]


def declared_arguments(tree: ast.Module) -> set[str]:
    literal = {c.args[0].value for c in calls(tree, "DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)}
    return literal | set(constant(tree, "ARGUMENT_PARAMETERS"))


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def yaml_params(path: Path) -> dict:
    return flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])


def node_parameters_function():
    """The launch file's own ``node_parameters``, run without launch installed."""
    tree = module(MAIN_LAUNCH)
    wanted = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name == "node_parameters")
              or (isinstance(n, ast.Assign) and n.targets[0].id in ("ARGUMENT_PARAMETERS", "_CASTS"))]
    namespace: dict = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(MAIN_LAUNCH), "exec"), namespace)
    return namespace["node_parameters"]


def test_main_launch_declares_the_documented_arguments() -> None:
    assert REQUIRED_ARGUMENTS <= declared_arguments(module(MAIN_LAUNCH))


def test_main_launch_starts_the_installed_executable() -> None:
    tree = module(MAIN_LAUNCH)
    assert (constant(tree, "PACKAGE"), constant(tree, "EXECUTABLE")) == ("unipixel_ros", "unipixel_node")
    (node,) = calls(tree, "Node")
    assert {k.arg: getattr(k.value, "id", None) for k in node.keywords}["executable"] == "EXECUTABLE"
    script = ROOT / "scripts" / "unipixel_node"
    assert script.is_file() and os.access(script, os.X_OK)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"install\(PROGRAMS scripts/unipixel_node DESTINATION lib/\$\{PROJECT_NAME\}\)", cmake)
    assert "foreach(dir launch config)" in cmake          # launch/ and config/ go to share/unipixel_ros
    assert '"config", "unipixel.yaml"' in MAIN_LAUNCH.read_text() and (ROOT / "config" / "unipixel.yaml").is_file()


def test_every_launch_argument_sets_a_declared_parameter() -> None:
    declared = {spec.name for spec in NODE_PARAMS}
    for argument, (parameter, kind, help_text) in constant(module(MAIN_LAUNCH), "ARGUMENT_PARAMETERS").items():
        assert parameter in declared, argument
        default = next(s.default for s in NODE_PARAMS if s.name == parameter)
        assert type(default).__name__ == kind, argument
        assert help_text


def test_launch_arguments_become_typed_parameters_and_empty_ones_keep_the_file() -> None:
    node_parameters = node_parameters_function()
    assert node_parameters({"cameras": " front, rear ,", "model": "PolyU-ChenLab/UniPixel-7B", "device": "",
                            "window_seconds": "2.5", "window_frames": "8", "buffer_seconds": "12"}) == {
        "cameras": ["front", "rear"], "model.id": "PolyU-ChenLab/UniPixel-7B", "query.window_seconds": 2.5,
        "query.max_frames": 8, "window.duration_s": 12.0}
    assert node_parameters({"cameras": "", "dtype": " "}) == {}


def test_two_camera_example_includes_the_main_launch_with_its_own_file() -> None:
    tree = module(EXAMPLE_LAUNCH)
    text = EXAMPLE_LAUNCH.read_text()
    assert '"launch", "unipixel.launch.py"' in text
    (include,) = calls(tree, "IncludeLaunchDescription")
    mapping = next(k.value for k in include.keywords if k.arg == "launch_arguments").func.value
    passed = {k.value: v for k, v in zip(mapping.keys, mapping.values)}
    assert set(passed) <= declared_arguments(module(MAIN_LAUNCH))
    assert passed["cameras"].value == "front,rear"
    example = yaml_params(ROOT / "config" / "two_cameras.yaml")
    assert example["cameras"] == ["front", "rear"]
    allowed = {s.name for s in NODE_PARAMS} | {camera_param(c, s.name) for c in ("front", "rear") for s in CAMERA_PARAMS}
    assert set(example) <= allowed


@pytest.mark.ros
@pytest.mark.parametrize("params_file, cameras", [("unipixel.yaml", ["front"]), ("two_cameras.yaml", ["front", "rear"])])
def test_the_node_accepts_the_parameter_files(params_file: str, cameras: list[str]) -> None:
    pytest.importorskip("rclpy")
    from lifecycle_msgs.srv import GetState
    from rcl_interfaces.srv import ListParameters

    from helpers.perception_client import Client, NodeProcess

    path = ROOT / "config" / params_file
    node = NodeProcess(f"/launch_test_{len(cameras)}", {}, params_file=path)
    client = Client(f"launch_test_client_{len(cameras)}")
    try:
        node.wait_ready()
        state = client.call(GetState, f"{node.fqn}/get_state", GetState.Request()).current_state.label
        assert state == "active", node.log()
        names = set(client.call(ListParameters, f"{node.fqn}/list_parameters", ListParameters.Request()).result.names)
    finally:
        client.close()
        node.stop()
    names -= {"use_sim_time", "start_type_description_service"}          # rclpy's own
    in_file = set(yaml_params(path))
    assert in_file <= names                                               # every key is declared
    if params_file == "unipixel.yaml":
        assert names == in_file                                           # and every parameter is listed
    else:
        assert {camera_param(c, "image_topic") for c in cameras} <= names
