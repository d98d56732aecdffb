"""`python -m benchmarks --quick` runs end to end and writes figures (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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

    (case,) = document["results"]["push"]["cases"]
    assert case["backend"] == "memory" and case["subscribers"] == 1
    assert case["events"] > 0
    assert case["deliveries"] == case["expected_deliveries"] == case["events"]
    assert isinstance(case["latency"]["p50_ms"], float)
    assert isinstance(case["latency"]["p99_ms"], float)

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
