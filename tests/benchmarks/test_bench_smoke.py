"""`python -m benchmarks --quick` runs end to end and writes figures (no timing is asserted): push and reads,
and the hostile load.

The push scenario measures the floor (benchmarks/floor, Node's `ws`) beside Darkroom; where node or the
floor's npm packages are missing the scenario reports the floor as skipped, and so does this test.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLOOR_READY = shutil.which("node") is not None and (REPO / "benchmarks/floor/node_modules/ws/package.json").is_file()


def test_quick_push_and_reads_write_figures(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--only",
        "push,reads",
        "--push-backends",
        "memory",
        "--subscribers",
        "1",
        "--push-rates",
        "20",
        "--db",
        "sqlite",
        "--out",
        str(out),
    ]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Targets:" in run.stdout

    document = json.loads((out / "latest.json").read_text())
    assert document["quick"] is True
    assert document["machine"]["cpus"]

    push = document["results"]["push"]
    assert not push["failed"], push["failed"]
    cases = {case["backend"]: case for case in push["cases"]}
    assert set(cases) == ({"floor", "memory"} if FLOOR_READY else {"memory"})
    for case in cases.values():
        assert case["subscribers"] == 1 and case["rate"] == 20
        assert case["events"] == case["changes"] > 0  # every change counted
        assert case["deliveries"] == case["expected_deliveries"] == case["events"]
        assert case["all_delivered"] and case["duplicates"] == case["out_of_order"] == 0
        assert isinstance(case["latency"]["p50_ms"], float)
        assert isinstance(case["latency"]["p99_ms"], float)
        assert isinstance(case["first_change_p50_ms"], float)
    if FLOOR_READY:
        assert set(cases["memory"]["vs_floor"]) == {"p50", "p95", "p99"}
        assert "| floor (Node ws) |" in run.stdout
    else:
        assert push["skipped"]["floor"]

    reads = document["results"]["reads"]
    assert isinstance(reads["latency"]["p50_ms"], float)
    assert reads["pages_per_second"] > 0
    counts = reads["statements_by_page_size"]
    assert set(counts) == {"1", "10", "50", "100"}
    assert all(isinstance(n, int) and n > 0 for n in counts.values())

    names = {target["target"] for target in document["targets"]}
    assert any(name.startswith("Media page") for name in names)
    assert (out / "latest.md").read_text().strip()
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").stat().st_size > 0


def test_quick_hostile_load_reports_the_loop_and_every_attack(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "hostile", "--db", "sqlite", "--out", str(out)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Hostile load:" in run.stdout

    hostile = json.loads((out / "latest.json").read_text())["results"]["hostile"]
    for phase in (hostile["quiet"], hostile["attack"]):
        assert phase["events"] > 0 and phase["deliveries"] == phase["events"]
        assert isinstance(phase["latency"]["p99_ms"], float)
        assert isinstance(phase["max_stall_ms"], float)
        assert phase["loop_wakes"] > 0
    # Every attack was sent once and answered somehow; which way is what the figure is for.
    assert hostile["attacks_sent"] == len(hostile["answers_by_attack"]) == sum(hostile["answers"].values())
    assert set(hostile["answers_by_family"]) == {"inputs", "outputs", "aliases", "cursors", "upload"}
    assert set(hostile["hostile_outputs"]) == {"HTML page", "SVG data: URI", "decompression-bomb PNG"}
    stall = next(t for t in json.loads((out / "latest.json").read_text())["targets"] if "event-loop" in t["target"])
    assert stall["met"] in (True, False)
