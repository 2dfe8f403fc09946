"""pip install for the Python side of unipixel_ros (the node's modules and its entry point).

The ROS interfaces (msg/srv/action) are built by colcon from CMakeLists.txt; the
version is read from package.xml so the two never disagree.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1)

setup(
    name="unipixel_ros",
    version=VERSION,
    description="UniPixel as a ROS 2 node: language-grounded segmentation and tracking on camera streams",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["unipixel_ros", "unipixel_ros.*"]),
    package_data={"unipixel_ros": ["data/**/*"]},
    include_package_data=True,
    install_requires=[
        "numpy",
        "torch>=2.4",
        "transformers>=5.0,<6",
        "sam2>=1.1",
        "safetensors",
        "tokenizers",
        "huggingface_hub",
        "pillow",
        "opencv-python-headless",
        "tqdm",
    ],
    extras_require={"export": ["onnx", "onnxruntime", "onnxscript"]},
    entry_points={
        "console_scripts": [
            "unipixel_node = unipixel_ros.ros.process:main",
            "unipixel_replay = unipixel_ros.replay.__main__:main",
        ],
    },
)
