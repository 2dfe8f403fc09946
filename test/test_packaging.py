"""The package metadata agrees with itself and with what is on disk."""
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import unipixel_ros

ROOT = Path(__file__).resolve().parents[1]


def test_versions_agree() -> None:
    xml_version = ET.parse(ROOT / "package.xml").getroot().findtext("version")
    setup_version = subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip().splitlines()[-1]
    assert xml_version == setup_version == unipixel_ros.__version__


def test_package_xml_is_format_3_and_names_the_package() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "unipixel_ros"
    assert root.find("export/build_type").text == "ament_cmake"


def test_every_interface_file_is_generated_and_nothing_else() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|srv|action)/[A-Za-z0-9]+\.(?:msg|srv|action))"', cmake))
    on_disk = {str(p.relative_to(ROOT)) for d in ("msg", "srv", "action") for p in (ROOT / d).iterdir()}
    assert listed == on_disk


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(bash scripts/\S+\.sh)\s*(?:#.*)?$", readme, flags=re.M)
    test_commands = [c for c in commands if "test" in c]
    assert test_commands, "README names no test command"
    assert any(line.strip().startswith(test_commands[0]) for line in ci.splitlines())


def test_generated_interfaces_import_next_to_the_sources() -> None:
    from unipixel_ros.msg import ObjectMasks, VisualPrompt  # noqa: F401
    from unipixel_ros.srv import Query  # noqa: F401
    from unipixel_ros.action import Query as QueryAction  # noqa: F401

    assert VisualPrompt.BOX == 1 and VisualPrompt.MASK == 2
    assert Path(unipixel_ros.__path__[0]) == ROOT / "unipixel_ros"


def test_readme_documents_every_parameter() -> None:
    from unipixel_ros.ros.params import CAMERA_PARAMS, NODE_PARAMS

    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in NODE_PARAMS if f"`{p.name}`" not in readme]
    missing += [p.name for p in CAMERA_PARAMS if f"`cameras.<name>.{p.name}`" not in readme]
    assert not missing, f"README lacks {missing}"
