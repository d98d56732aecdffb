"""`python -m benchmarks --quick` runs end to end and writes figures (no timing is asserted): push and reads,
the hostile load, the subscribe burst and the reconnect storm.

The push and burst scenarios measure the peer (benchmarks/peer, Fastify with Mercurius) and the floor
(benchmarks/floor, Node's `ws`) beside Darkroom; where node or their npm packages are missing the scenario
reports them as skipped, and so does this test.
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
PEER_READY = (
    shutil.which("node") is not None and (REPO / "benchmarks/peer/node_modules/mercurius/package.json").is_file()
)


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
    assert set(cases) == {"memory"} | ({"floor"} if FLOOR_READY else set()) | ({"peer"} if PEER_READY else set())
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
    if PEER_READY:
        assert set(cases["memory"]["vs_peer"]) == {"p50", "p95", "p99"}
        assert "| peer (Fastify + Mercurius) |" in run.stdout
    else:
        assert push["skipped"]["peer"]

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


def test_quick_burst_and_storm_report_every_server_and_every_event(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--only",
        "burst,storm",
        "--burst",
        "20",
        "--storm",
        "40",
        "--db",
        "sqlite",
        "--out",
        str(out),
    ]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Subscribe burst:" in run.stdout and "Reconnect storm" in run.stdout

    results = json.loads((out / "latest.json").read_text())["results"]
    burst = results["burst"]
    ready = {"darkroom": True, "peer": PEER_READY, "floor": FLOOR_READY}
    for name, expected in ready.items():
        side = burst[name]
        if not expected:
            assert side["skipped"]
            continue
        assert side["subscribed"] == side["expected"] == side["delivered"] == 20
        assert isinstance(side["first_change"]["p99_ms"], float)
        assert isinstance(side["first_frame"]["p50_ms"], float)

    storm = results["storm"]
    assert storm["feed_subscribers"] == 40 and storm["events"] > 0
    assert storm["every_event_once_in_order"], storm
    assert storm["all_caught_up"] and isinstance(storm["catch_up_seconds"], float)
    assert storm["reconnects"] >= 40
    assert isinstance(storm["sql_statements_in_window"], int) and storm["sql_statements_in_window"] > 0
    assert isinstance(storm["generation_push_p99_vs_before"], float)
