"""The request script: what a user would have asked the node, and when (YAML).

::

    ground_truth_topic: /camera/ground_truth   # optional: mono8 label images, pixel k = object k
    requests:
      - at: 1.0                   # seconds from the bag's start (or at_ns: absolute bag time)
        camera: front
        query: Please segment the red circle.
        remember: true            # keep the objects: tracked on every frame after this
        window_seconds: 0         # 0 = query.window_seconds (as in the Query request)
        max_frames: 0             # 0 = query.max_frames
        prompts:                  # optional visual prompts
          - {type: point, object: 0, x: 120, y: 80, stamp: latest}
          - {type: box, object: 1, box: [10, 10, 60, 50], stamp_ns: 1700000000100000000}
          - {type: memory, object: 2, memory_id: 1}
        truth: [1]                # ground-truth object of each returned object (optional)
      - at: 2.0
        camera: front
        click: [160, 90]          # a left click at pixel (x, y), as on <image_topic>_mouse_left
        truth: 2

A request runs once every message logged up to its time has been taken in (and tracked).
A prompt's ``stamp`` is the header stamp (ns) of the frame it was drawn on, or ``latest``
(the newest frame, as a zero stamp means to the node). Without ``truth``, each object is
compared with the ground-truth object it overlaps most on the request's newest frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unipixel_ros.frames import NS_PER_S
from unipixel_ros.replay.errors import ReplayError

PROMPT_TYPES = ("point", "box", "memory")
_REQUEST_KEYS = {"at", "at_ns", "camera", "query", "click", "remember", "window_seconds", "max_frames",
                 "prompts", "truth"}


@dataclass(frozen=True)
class PromptSpec:
    type: str                       # point, box or memory
    object_index: int
    coordinates: tuple[float, ...] = ()   # (x, y) or (x0, y0, x1, y1)
    stamp_ns: int = 0               # 0 = latest
    memory_id: int = 0


@dataclass(frozen=True)
class Request:
    """One query or click of the script, at a bag time."""

    index: int                      # position in the script
    at: float | None                # seconds from the bag's start, or
    at_ns: int | None               # absolute bag time
    camera: str
    kind: str                       # "query" or "click"
    text: str = ""
    click: tuple[float, float] = (0.0, 0.0)
    remember: bool = False
    window_seconds: float = 0.0
    max_frames: int = 0
    prompts: tuple[PromptSpec, ...] = ()
    truth: tuple[int, ...] | None = None

    def time_ns(self, bag_start_ns: int) -> int:
        return self.at_ns if self.at_ns is not None else bag_start_ns + int(round(self.at * NS_PER_S))

    @property
    def name(self) -> str:
        when = f"at {self.at:g} s" if self.at is not None else f"at_ns {self.at_ns}"
        return f"request {self.index} ({self.kind} {when})"


@dataclass(frozen=True)
class Script:
    requests: tuple[Request, ...]
    ground_truth_topic: str = ""
    path: str = field(default="", compare=False)


def _number(where: str, key: str, value: Any, integer: bool = False, minimum: float | None = None) -> Any:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or (minimum is not None and value < minimum):
        what = "an integer" if integer else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ReplayError(f"{where}: '{key}' must be {what}{bound}, got {value!r}")
    return value


def _prompt(where: str, entry: Any) -> PromptSpec:
    if not isinstance(entry, dict):
        raise ReplayError(f"{where}: must be a mapping with 'type', got {entry!r}")
    kind = entry.get("type")
    if kind not in PROMPT_TYPES:
        raise ReplayError(f"{where}: 'type' must be one of {', '.join(PROMPT_TYPES)}, got {kind!r}")
    k = _number(where, "object", entry.get("object"), integer=True, minimum=0)
    stamp = entry.get("stamp", "latest")
    stamp_ns = entry.get("stamp_ns", 0 if stamp == "latest" else stamp)
    if kind != "memory":
        _number(where, "stamp_ns", stamp_ns, integer=True, minimum=0)
    if kind == "point":
        coords = (_number(where, "x", entry.get("x")), _number(where, "y", entry.get("y")))
    elif kind == "box":
        box = entry.get("box")
        if not (isinstance(box, list) and len(box) == 4):
            raise ReplayError(f"{where}: 'box' must be [x0, y0, x1, y1], got {box!r}")
        coords = tuple(_number(where, "box", v) for v in box)
    else:
        return PromptSpec("memory", k, memory_id=_number(where, "memory_id", entry.get("memory_id"), True, 1))
    return PromptSpec(kind, k, tuple(float(c) for c in coords), int(stamp_ns))


def _request(index: int, entry: Any) -> Request:
    where = f"request {index}"
    if not isinstance(entry, dict):
        raise ReplayError(f"{where}: must be a mapping, got {entry!r}")
    unknown = sorted(set(entry) - _REQUEST_KEYS)
    if unknown:
        raise ReplayError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_REQUEST_KEYS))})")
    if ("at" in entry) == ("at_ns" in entry):
        raise ReplayError(f"{where}: give its time as 'at' (seconds from the bag's start) or 'at_ns', one of them")
    at = float(_number(where, "at", entry["at"], minimum=0)) if "at" in entry else None
    at_ns = _number(where, "at_ns", entry["at_ns"], integer=True, minimum=0) if "at_ns" in entry else None
    camera = entry.get("camera")
    if not isinstance(camera, str) or not camera:
        raise ReplayError(f"{where}: 'camera' must name a camera, got {camera!r}")
    if ("query" in entry) == ("click" in entry):
        raise ReplayError(f"{where}: give either 'query' (text, may be empty with prompts) or 'click' [x, y]")
    truth = entry.get("truth")
    if truth is not None:
        truth = tuple(truth) if isinstance(truth, list) else (truth,)
        for value in truth:
            _number(where, "truth", value, integer=True, minimum=1)
    common = dict(index=index, at=at, at_ns=at_ns, camera=camera, truth=truth)
    if "click" in entry:
        click = entry["click"]
        if not (isinstance(click, list) and len(click) == 2):
            raise ReplayError(f"{where}: 'click' must be [x, y], got {click!r}")
        x, y = (float(_number(where, "click", v)) for v in click)
        return Request(kind="click", click=(x, y), **common)
    text = entry["query"] if entry["query"] is not None else ""
    if not isinstance(text, str):
        raise ReplayError(f"{where}: 'query' must be a text, got {text!r}")
    remember = entry.get("remember", False)
    if not isinstance(remember, bool):
        raise ReplayError(f"{where}: 'remember' must be true or false, got {remember!r}")
    prompts = entry.get("prompts", []) or []
    if not isinstance(prompts, list):
        raise ReplayError(f"{where}: 'prompts' must be a list, got {prompts!r}")
    return Request(kind="query", text=text, remember=remember,
                   window_seconds=float(_number(where, "window_seconds", entry.get("window_seconds", 0.0), minimum=0)),
                   max_frames=_number(where, "max_frames", entry.get("max_frames", 0), integer=True, minimum=0),
                   prompts=tuple(_prompt(f"{where} prompt {i}", p) for i, p in enumerate(prompts)), **common)


def parse_script(data: Any, path: str = "") -> Script:
    """The script from its parsed YAML; ReplayError names the bad entry and key."""
    if not isinstance(data, dict) or not isinstance(data.get("requests"), list):
        raise ReplayError(f"request script {path}: needs a 'requests' list at the top")
    topic = data.get("ground_truth_topic", "") or ""
    if not isinstance(topic, str):
        raise ReplayError(f"request script {path}: 'ground_truth_topic' must be a topic name, got {topic!r}")
    return Script(tuple(_request(i, e) for i, e in enumerate(data["requests"])), topic, path)


def load_script(path: Path) -> Script:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ReplayError(f"cannot read the request script {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ReplayError(f"request script {path} is not valid YAML: {exc}") from exc
    return parse_script(data, str(path))
