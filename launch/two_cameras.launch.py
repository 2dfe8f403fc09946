"""Example: one UniPixel node watching two cameras of a perception stack.

    ros2 launch unipixel_ros two_cameras.launch.py model:=PolyU-ChenLab/UniPixel-3B

The cameras are named ``front`` and ``rear``; their images are expected on
``/front_camera/color/image_raw`` and ``/rear_camera/color/image_raw`` (a typical RGB-D
driver layout) with CameraInfo next to them, as ``two_cameras.yaml`` says. Tracked
objects of both come out on ``/perception/unipixel/tracked_objects``; each camera has
its own ``label_image`` and ``overlay`` under ``/perception/unipixel/<camera>/``.
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = "unipixel_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    model = DeclareLaunchArgument("model", default_value="", description="checkpoint (empty: the YAML's)")
    device = DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda or cuda:N")
    unipixel = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "unipixel.launch.py")),
        launch_arguments={
            "namespace": "perception",
            "cameras": "front,rear",
            "params_file": os.path.join(share, "config", "two_cameras.yaml"),
            "model": LaunchConfiguration("model"),
            "device": LaunchConfiguration("device"),
        }.items())
    return LaunchDescription([model, device, unipixel])
