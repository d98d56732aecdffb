"""`python -m benchmarks.memory_census`: where an idle subscription's memory goes, by owner and by type.

    python -m benchmarks.memory_census                          # 1,000 and 10,000 subscriptions
    python -m benchmarks.memory_census --subscriptions 2000 --compression

Darkroom runs in this process (the embedded default: SQLite, memory broadcast, the built-in simulator)
so that tracemalloc sees its heap; the subscribers run in client processes, as in `python -m benchmarks`.
After a few warm-up subscriptions, it takes a snapshot, opens N `generation(id)` subscriptions to one
running generation, waits for each one's first frame, and takes another. The growth is attributed to the
first frame, from the allocation outwards, outside the standard library: the package (and for the server,
uvicorn, Litestar and Strawberry, the module) whose code asked for the memory. The census by type counts
the objects alive per subscription, tuples left out (tracemalloc's own records are tuples, and they would
drown the rest). tracemalloc's own bookkeeping is left out of both; RSS is not used, since tracemalloc
inflates it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import socket
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.clients import SubscriberFleet

STDLIB = os.path.dirname(os.__file__)
DETAILED = ("server", "uvicorn", "litestar", "strawberry")


def owner(trace: tracemalloc.Traceback) -> str:
    """Who asked for the memory: the innermost frame outside the standard library."""
    for frame in reversed(list(trace)):  # tracemalloc lists the innermost frame last
        filename = frame.filename
        if filename.startswith(STDLIB) and "site-packages" not in filename:
            continue
        if "site-packages" in filename:
            package, _, rest = filename.split("site-packages/")[-1].partition("/")
        else:
            parts = Path(filename).parts
            package, rest = (
                (parts[parts.index("server")], "/".join(parts[parts.index("server") + 1 :]))
                if ("server" in parts)
                else (Path(filename).name, "")
            )
        return f"{package}/{rest}" if package in DETAILED and rest else package
    return "the standard library"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def census(count: int, compression: bool) -> dict[str, Any]:
    import httpx
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    port = free_port()
    os.environ.update(
        {
            "PORT": str(port),
            "DATA_DIR": tempfile.mkdtemp(prefix="darkroom-census-"),
            "SIMULATOR_RUN_SECONDS": "3600",
            "LOG_LEVEL": "WARNING",
        }
    )
    app = create_app(Settings())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            ws="websockets-sansio",
            ws_per_message_deflate=compression,
        )
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(600):  # up to a minute for the lifespan (migrations, the catalogue)
        if server.started:
            break
        await asyncio.sleep(0.1)
    start = 'mutation { startGeneration(input: {model: "darkroom-sim/snap-still", input: {prompt: "census"}}) ' + (
        "{ generation { id } } }"
    )
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"http://127.0.0.1:{port}/graphql", json={"query": start})
    generation_id = answer.json()["data"]["startGeneration"]["generation"]["id"]
    ws_url = f"ws://127.0.0.1:{port}/graphql"
    warm = SubscriberFleet(ws_url, [generation_id] * 20, compression=compression)
    await warm.start()
    gc.collect()
    types_before = Counter(type(o).__name__ for o in gc.get_objects())
    tracemalloc.start(30)
    before = tracemalloc.take_snapshot()
    fleet = SubscriberFleet(ws_url, [generation_id] * count, per_process=2500, max_processes=4, compression=compression)
    await fleet.start(within=900)
    await asyncio.sleep(2.0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    types_after = Counter(type(o).__name__ for o in gc.get_objects())
    opened = fleet.opened
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    growth = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    owners: Counter[str] = Counter()
    for stat in growth:
        owners[owner(stat.traceback)] += stat.size_diff
    await fleet.stop()
    await warm.stop()
    server.should_exit = True
    await serving
    per = max(opened, 1)
    tracemalloc_types = {"tuple", "Traceback", "Frame", "Snapshot", "StatisticDiff", "Statistic", "_Traces"}
    census_types = {
        name: (types_after[name] - types_before[name]) / per for name in types_after if name not in tracemalloc_types
    }
    return {
        "subscriptions": count,
        "opened": opened,
        "compression": compression,
        "bytes_per_subscription": sum(owners.values()) / per,
        "by_owner": {name: size / per for name, size in owners.most_common() if size / per >= 64},
        "objects_per_subscription": {
            name: round(n, 2) for name, n in sorted(census_types.items(), key=lambda kv: -kv[1]) if n >= 0.5
        },
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['opened']:,} idle subscriptions, compression {'on' if result['compression'] else 'off'}: "
        f"{result['bytes_per_subscription'] / 1024:.1f} KiB of Python heap each",
        "",
        "| Owner | Bytes per subscription |",
        "|---|---:|",
        *(f"| {name} | {size:,.0f} |" for name, size in result["by_owner"].items()),
        "",
        "| Type | Objects per subscription |",
        "|---|---:|",
        *(f"| {name} | {count} |" for name, count in list(result["objects_per_subscription"].items())[:25]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_census", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", default="1000,10000", help="comma-separated counts (default 1000,10000)")
    parser.add_argument("--compression", action="store_true", help="the server offers permessage-deflate")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = []
    for count in (int(part) for part in args.subscriptions.split(",") if part.strip()):
        result = asyncio.run(census(count, args.compression))
        results.append(result)
        sys.stdout.write(report(result) + "\n\n")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
