"""`python -m benchmarks`: run the benchmarks, print the figures, write JSON, Markdown and a plot.

    python -m benchmarks                         # everything, full sizes (several minutes)
    python -m benchmarks --quick                 # small sizes, a smoke run
    python -m benchmarks --only push,reads --out benchmarks/results
    python -m benchmarks --only ingest --ingest-baseline main   # ingestion, before and after
    python -m benchmarks --only hostile          # the event loop and push latency under attack
    python -m benchmarks --only storm --storm 2000   # every feed socket dropped and resumed at once

The push, capacity and burst scenarios measure the peer and the floor too (benchmarks/peer, Fastify with
Mercurius; benchmarks/floor, a Node `ws` broadcaster: `npm ci --prefix benchmarks/peer` and
`npm ci --prefix benchmarks/floor` install them; without node they are reported as skipped).

PostgreSQL (BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/) must let the benchmark
create and drop databases; Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/0) is used for the
Redis broadcast case. A scenario whose service is down is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import code_tree, machine, profile_summary, raise_fd_limit
from benchmarks.report import markdown, plot, targets
from benchmarks.scenarios import SCENARIOS, Bench, run_scenario


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _rates(text: str) -> list[float]:
    rates = [float(part) for part in text.split(",") if part.strip()]
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("rates are changes per second, above 0")
    return rates


def _names(text: str, allowed: list[str]) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to quote")
    parser.add_argument(
        "--only",
        type=lambda text: _names(text, list(SCENARIOS)),
        default=list(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where results are written")
    parser.add_argument("--plot", type=Path, help="where the PNG goes (default: OUT/bench.png)")
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="database of the single-process scenarios (ingestion and two-process push always use PostgreSQL)",
    )
    parser.add_argument(
        "--push-backends",
        type=lambda text: _names(text, ["memory", "postgres", "redis"]),
        default=["memory", "postgres", "redis"],
        help="broadcast backends the push scenario covers",
    )
    parser.add_argument(
        "--subscribers", type=_ints, help="subscriber counts of the push scenario (default 1000; quick: 20)"
    )
    parser.add_argument(
        "--push-rates",
        type=_rates,
        default=[2.0, 20.0],
        help="changes per second the push scenario drives, each rate a case of its own (default 2,20)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out the floor (the bare Node ws broadcaster measured beside Darkroom in push, capacity, burst)",
    )
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="leave out the peer (Fastify with Mercurius, measured beside Darkroom in push, capacity, burst)",
    )
    parser.add_argument("--capacity", type=int, help="idle subscriptions the capacity scenario opens (default 10000)")
    parser.add_argument(
        "--burst", type=int, help="clients that subscribe at once in the burst scenario (default 1000; quick: 100)"
    )
    parser.add_argument(
        "--storm", type=int, help="feed subscribers the storm scenario drops and resumes (default 10000; quick: 300)"
    )
    parser.add_argument(
        "--ingest-baseline",
        metavar="REV_OR_DIR",
        help="also run the ingest scenario against this code, interleaved with this checkout: a git revision "
        "(exported with git archive, served with this venv) or another checkout's directory (served with its "
        ".venv when it has one)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample every server with py-spy (in the bench extra) into DIR/<server>.folded and summarise",
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do, so it is on by default)",
    )
    return parser


async def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    fd_limit = raise_fd_limit()
    failed = False
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as tmp:
        bench = Bench(
            workdir=Path(tmp),
            quick=args.quick,
            db=args.db,
            push_backends=args.push_backends,
            subscribers=args.subscribers or ([20] if args.quick else [1000]),
            push_rates=args.push_rates,
            floor=not args.no_floor,
            peer=not args.no_peer,
            burst=args.burst,
            storm=args.storm,
            capacity=args.capacity or (200 if args.quick else 10_000),
            ingest_baseline=args.ingest_baseline,
            compression=not args.no_compression,
            profile_dir=args.profile,
        )
        if bench.ingest_baseline is not None and "ingest" in args.only:
            try:  # a wrong revision or directory is said now, not after the other scenarios ran
                code_tree(bench.ingest_baseline, bench.workdir)
            except ValueError as exc:
                print(f"--ingest-baseline: {exc}", file=sys.stderr)
                return 2
        results: dict[str, Any] = {}
        try:
            for name in args.only:
                print(f"{name} …", flush=True)
                try:
                    results[name] = await run_scenario(name, bench)
                except Exception as exc:
                    failed = True
                    traceback.print_exc()
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed = failed or bool(results[name].get("failed"))
                print(f"{name} done in {results[name].get('wall_seconds', '?')} s", flush=True)
        finally:
            await bench.databases.drop_all()
            if failed:
                logs = args.out / f"logs-{stamp}"
                logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, logs / log.name)
                print(f"server logs kept in {logs}", file=sys.stderr)

    profiles = {}
    if args.profile is not None:
        for folded in sorted(args.profile.glob("*.folded")):
            profiles[folded.stem] = profile_summary(folded)
    verdicts = targets(results)
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "options": {
            "db": args.db,
            "push_backends": args.push_backends,
            "subscribers": bench.subscribers,
            "push_rates": bench.push_rates,
            "floor": bench.floor,
            "peer": bench.peer,
            "burst": bench.burst,
            "storm": bench.storm,
            "capacity": bench.capacity,
            "ingest_baseline": bench.ingest_baseline,
            "websocket_compression": bench.compression,
            "open_files_limit": fd_limit,
        },
        "results": results,
        "targets": verdicts,
    }
    if profiles:
        document["profiles"] = profiles
    text = markdown(results, verdicts)
    for server, summary in profiles.items():
        print(f"\nprofile of {server} (% of samples; self, then on the stack):")
        for share, frame in summary["self"][:10]:
            print(f"  {share:5.1f}%  {frame}")
        print("  --")
        for share, frame in summary["inclusive"]:
            print(f"  {share:5.1f}%  {frame}")
    print()
    print(text)
    payload = json.dumps(document, indent=2, sort_keys=False) + "\n"
    (args.out / f"results-{stamp}.json").write_text(payload)
    (args.out / "latest.json").write_text(payload)
    (args.out / "latest.md").write_text(text + "\n")
    host = document["machine"]
    title = f"Darkroom benchmarks, {started:%Y-%m-%d} ({host['cpus']} CPUs{', quick sizes' if args.quick else ''})"
    image = args.plot or args.out / "bench.png"
    if plot(results, image, title):
        print(f"wrote {args.out / 'latest.json'}, {args.out / 'latest.md'} and {image}")
    else:
        print(f"wrote {args.out / 'latest.json'}; no plot: matplotlib is missing (pip install '.[bench]')")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    begun = time.perf_counter()
    code = asyncio.run(run(args))
    print(f"benchmarks took {time.perf_counter() - begun:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
