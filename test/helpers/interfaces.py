"""The package's interface types, found from the definition files in msg/, srv/ and action/."""
from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "unipixel_ros"


def interface_types() -> dict[str, dict[str, type]]:
    """``{"msg": {Name: class}, "srv": {...}, "action": {...}}`` for every definition file."""
    found: dict[str, dict[str, type]] = {}
    for kind in ("msg", "srv", "action"):
        module = importlib.import_module(f"{PACKAGE}.{kind}")
        found[kind] = {p.stem: getattr(module, p.stem)
                       for p in sorted((ROOT / kind).glob(f"*.{kind}"))}
    return found
