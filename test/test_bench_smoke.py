"""Every benchmark in bench/ runs, at its smallest size (``--smoke``), and prints its ratios.

The numbers of a smoke run mean nothing; what is checked is that each script, as its
docstring gives it, starts, measures and reaches its ratio lines. The ROS benches run
their processes in this session's domain, on loopback (see conftest.py).
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

# script -> (arguments, ratio lines that must be printed)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "bench_sam2_cache.py": (["--smoke"], [r"^second / first ratio: \d+\.\d{3}$"]),
    "bench_decoder.py": (["--smoke"], [r"^\s+1\s+onnxruntime \(fp32\)\s+\d+\.\d{2}\s+\d+\.\d{2}x$"]),
    "bench_pipeline.py": (["--smoke"], [r"^text\s+second/first = \d+\.\d{3}$",
                                        r"^point\s+second/first = \d+\.\d{3}$"]),
    "bench_training.py": (["--smoke"], [r"^\s+sam: .*\(1\.00 x sam\)", r"^\s+track: .*\(\d+\.\d{2} x sam\)",
                                        r"^\s+click: .*\(\d+\.\d{2} x text_image\)$"]),
    "bench_ingest.py": (["--smoke"], [r"^\s+64x48\s+bgr8\s+\d+/\d+\s+\d+\.\d{3}\s+\d+\.\d{3}\s+(\d+\.\d{2}|n/a)\s"
                                      r".*\s\d+\.\d{3}\s+\d+M\s+\d+%/\d+% of [1-9]\d*$"]),
    "bench_replay.py": (["--smoke"], [r"^\s+5\s+\d+\.\d{2}\s+\d+\.\d{2}\s+replay / track = \d+\.\d{3}$"]),
    "bench_depth3d.py": (["--smoke"], [r"^\s+\d+x\d+\s+\d+\s+\d+\.\d\s+\d+\.\d{2}\s+3-D / track = \d+\.\d{4}$"]),
    "bench_tracking_batch.py": (["--smoke"], [r"^tiny 2 objects: batched / per-object = \d+\.\d{3}$"]),
    "gpu_check.py": (["--smoke"], [r"^decode compiled\s+\d+\.\d{3} ms/token = \d+\.\d{2} x floor$"]),
    "bench_node_query.py": (["--smoke"], [r"ROS overhead / pipeline time = .* = \d+\.\d{4}$",
                                          r"frames/s 5 objects / 1 object = \d+\.\d{3}; "
                                          r"object-frames/s 5 / 1 = \d+\.\d{3}$",
                                          r"end / quarter = \d+\.\d{3}$"]),
}
ROS_BENCHES = {"bench_ingest.py", "bench_node_query.py"}


def test_every_bench_script_has_a_smoke_case() -> None:
    scripts = {path.name for path in [*BENCH.glob("bench_*.py"), *BENCH.glob("gpu_check*.py")]}
    assert scripts == {case.split()[0] for case in CASES}


def test_the_sam2_cache_bench_builds_sam2_at_unipixels_size() -> None:
    """``--model unipixel`` (what its docstring runs on a GPU): SAM 2.1 hiera-b+ at 768 px."""
    spec = importlib.util.spec_from_file_location("bench_sam2_cache", BENCH / "bench_sam2_cache.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sam = bench.unipixel_sam2()
    assert sam.image_size == 768
    assert sam.image_encoder.trunk.channel_list == [896, 448, 224, 112]     # hiera-b+
    assert not sam.training


def test_the_ingest_bench_prints_no_ratio_over_an_unmeasurable_baseline() -> None:
    """A bare subscriber that used less than one /proc clock tick (a fast machine, a short
    stream) has no CPU per frame to divide by: the column says n/a, the run goes on."""
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCH / "bench_ingest.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench           # its dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    assert bench.ratio(3.0, 0.0) == "      n/a"
    assert bench.ratio(3.0, 1.5) == "     2.00"


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    pytest.param(case, marks=[pytest.mark.ros] if case.split()[0] in ROS_BENCHES else [])
    for case in CASES])
def test_bench_runs_at_its_smallest_size_and_prints_its_ratios(case: str, tmp_path: Path) -> None:
    args, ratio_lines = CASES[case]
    script = case.split()[0]
    if script == "bench_node_query.py":
        args = [*args, "--logs", str(tmp_path)]
    env = dict(os.environ)                   # this session's ROS domain, loopback-only discovery
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and env.get("ROS_DOMAIN_ID")
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"{case} failed after {seconds:.0f} s:\n{result.stdout}\n{result.stderr}"
    for pattern in ratio_lines:
        assert re.search(pattern, result.stdout, re.MULTILINE), f"{case}: no line matching {pattern!r}:\n{result.stdout}"
