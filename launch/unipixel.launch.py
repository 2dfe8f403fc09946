"""Start the UniPixel node with its parameter file and the common settings as arguments.

    ros2 launch unipixel_ros unipixel.launch.py cameras:=front,rear model:=PolyU-ChenLab/UniPixel-3B

Every argument left empty keeps the value from ``params_file`` (by default the package's
``config/unipixel.yaml``, which documents every parameter). ``cameras`` is a
comma-separated list; each camera's topics come from ``cameras.<name>.*`` in the
parameter file, and default to ``<name>/image_raw`` in the node's namespace.
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "unipixel_ros"
EXECUTABLE = "unipixel_node"
NODE_NAME = "unipixel"

# launch argument -> (node parameter, type, help); an empty argument keeps the params file's value
ARGUMENT_PARAMETERS = {
    "model": ("model.id", "str", "UniPixel checkpoint: local directory, Hugging Face id "
              "(PolyU-ChenLab/UniPixel-3B / -7B), synthetic (shipped, synthetic shapes only) or tiny (untrained)"),
    "device": ("model.device", "str", "auto, cpu, cuda or cuda:N"),
    "dtype": ("model.dtype", "str", "auto, float32, bfloat16 or float16"),
    "decoder_backend": ("model.decoder_backend", "str", "SAM 2 mask decoder: torch, onnxruntime or tensorrt"),
    "window_seconds": ("query.window_seconds", "float", "default query window length [s]"),
    "window_frames": ("query.max_frames", "int", "default query window length [frames]"),
    "buffer_seconds": ("window.duration_s", "float", "frames kept per camera [s]"),
}
_CASTS = {"str": str, "float": float, "int": int}


def node_parameters(arguments: dict[str, str]) -> dict[str, object]:
    """Parameter overrides from launch argument values (strings); empty ones are left out."""
    overrides: dict[str, object] = {}
    cameras = [name.strip() for name in arguments.get("cameras", "").split(",") if name.strip()]
    if cameras:
        overrides["cameras"] = cameras
    for argument, (parameter, kind, _) in ARGUMENT_PARAMETERS.items():
        value = arguments.get(argument, "").strip()
        if value:
            overrides[parameter] = _CASTS[kind](value)
    return overrides


def _launch_node(context, *args, **kwargs) -> list[Node]:
    names = ["cameras", *ARGUMENT_PARAMETERS]
    values = {name: LaunchConfiguration(name).perform(context) for name in names}
    return [Node(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
        namespace=LaunchConfiguration("namespace").perform(context),
        parameters=[LaunchConfiguration("params_file").perform(context), node_parameters(values)],
        output="screen", emulate_tty=True)]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "unipixel.yaml")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter YAML (every parameter, commented)"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="comma-separated camera names, e.g. front,rear"),
        *(DeclareLaunchArgument(name, default_value="", description=help_text)
          for name, (_, _, help_text) in ARGUMENT_PARAMETERS.items()),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_node)])
