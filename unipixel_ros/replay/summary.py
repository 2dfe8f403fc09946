"""The run's summary: JSON (everything) and CSV (one row per object a request returned)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("request", "kind", "at_s", "camera", "success", "message", "answer", "frames_used", "object_id",
               "label", "score", "truth", "J", "F", "J&F", "tracked_frames", "tracked_J", "tracked_F",
               "tracked_J&F", "seconds")


def build_summary(meta: dict[str, Any], results: list[dict[str, Any]],
                  tracked: dict[int, dict[str, Any]], bag_start_ns: int) -> dict[str, Any]:
    """Meta data of the run plus every request with its objects (and their tracked scores)."""
    requests = []
    for entry in results:
        entry = dict(entry, at_s=(entry["at_ns"] - bag_start_ns) / 1e9)
        entry["objects"] = [dict(o, tracked=tracked.get(o["id"])) if o["id"] else o for o in entry["objects"]]
        requests.append(entry)
    return {**meta, "requests": requests}


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def csv_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in summary["requests"]:
        base = {"request": entry["index"], "kind": entry["kind"], "at_s": _round(entry["at_s"]),
                "camera": entry["camera"], "success": entry["success"], "message": entry["message"],
                "answer": entry.get("answer", ""), "frames_used": len(entry.get("frame_stamps", [])),
                "seconds": _round(entry["seconds"])}
        if not entry["objects"]:
            rows.append(base)
        for obj in entry["objects"]:
            tracked = obj.get("tracked") or {}
            rows.append({**base, "object_id": obj["id"], "label": obj["label"], "score": _round(obj["score"]),
                         "truth": obj.get("truth"), **{k: _round(obj.get(k)) for k in ("J", "F", "J&F")},
                         "tracked_frames": tracked.get("tracked_frames"),
                         **{f"tracked_{k}": _round(tracked.get(k)) for k in ("J", "F", "J&F")}})
    return rows


def write_summary(summary: dict[str, Any], json_path: Path, csv_path: Path) -> None:
    Path(json_path).write_text(json.dumps(summary, indent=2) + "\n")
    with open(csv_path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(summary))
