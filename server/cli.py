"""The `darkroom` command: serve, worker, simulator, migrate, export-schema, cleanup, api-key."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from server.log import configure_logging
from server.provider.adapters import ADAPTERS
from server.settings import Settings

logger = logging.getLogger("darkroom")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings.server.host = args.host or settings.server.host
    settings.server.port = args.port or settings.server.port
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        ws="websockets-sansio",
        ws_per_message_deflate=settings.graphql.ws_compression,
        # A WebSocket message carries one GraphQL request: held to a request body's limit (uvicorn's is 16 MiB).
        ws_max_size=settings.graphql.max_body_bytes,
        timeout_graceful_shutdown=settings.server.shutdown_grace_seconds,
    )
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.workers.app import WorkerConfigError, create_worker_app

    settings.server.host = args.host or settings.server.host
    settings.server.port = args.port or settings.server.port
    try:
        app = create_worker_app(settings)
    except WorkerConfigError as exc:
        sys.stderr.write(f"darkroom worker: {exc}\n")
        return 2
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        timeout_graceful_shutdown=settings.server.shutdown_grace_seconds,
    )
    return 0


def _simulator(settings: Settings, args: argparse.Namespace) -> int:
    ADAPTERS[args.provider].serve_simulator(
        settings,
        args.host or "127.0.0.1",
        args.port or settings.simulator.port,
        args.public_url,
        allow_private_inputs=args.allow_private_inputs,
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from server.db.migrate import upgrade
    from server.db.session import create_engine

    async def run() -> None:
        engine = create_engine(settings)
        try:
            await upgrade(engine, args.revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
    logger.info("migrated to %s", args.revision)
    return 0


def _export_schema(settings: Settings, args: argparse.Namespace) -> int:
    from server.graphql.schema import schema_sdl

    sdl = schema_sdl()
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
        logger.info("wrote %s", args.output)
    return 0


def _cleanup(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from server.runtime import Runtime

    async def run() -> dict[str, object]:
        runtime = Runtime(settings)
        await runtime.start()
        try:
            return (await runtime.retention.run(dry_run=args.dry_run)).as_dict()
        finally:
            await runtime.stop()

    sys.stdout.write(json.dumps(asyncio.run(run())) + "\n")
    return 0


def _api_key(settings: Settings, args: argparse.Namespace) -> int:
    from server.db.migrate import upgrade
    from server.db.session import create_engine, create_sessionmaker
    from server.services.access.api_keys import ApiKeyService
    from server.services.errors import ServiceError
    from server.services.spend.prices import PriceTableError, load_price_table
    from server.services.spend.service import SpendService

    if args.action == "create" and bool(args.name) == bool(args.name_option):
        sys.stderr.write("darkroom api-key create: give the key's name once: NAME or --name NAME\n")
        return 2
    if args.action == "update":
        clashes = (args.no_budget and (args.budget is not None or args.period is not None)) or (
            args.no_max_running and args.max_running is not None
        )
        if clashes:
            sys.stderr.write("darkroom api-key update: an option and its --no- form cannot be given together\n")
            return 2
        if (
            args.budget is None
            and args.period is None
            and args.max_running is None
            and not (args.no_budget or args.no_max_running)
        ):
            sys.stderr.write("darkroom api-key update: nothing to change (--budget, --period, --max-running...)\n")
            return 2

    async def run() -> int:
        engine = create_engine(settings)
        try:
            if settings.database.migrate_on_start:
                await upgrade(engine)
            sessions = create_sessionmaker(engine)
            keys = ApiKeyService(settings, sessions)
            if args.action == "create":
                created = await keys.create(args.name or args.name_option, _limits(args, settings))
                sys.stdout.write(created.token + "\n")
                sys.stderr.write(
                    f"created API key {created.key.id} ({created.key.prefix}, {created.key.name!r}); "
                    "store the token now, it is not shown again\n"
                )
            elif args.action == "update":
                key = await keys.update(args.key, _limits(args, settings))
                sys.stdout.write(
                    f"updated {key.id} ({key.prefix}, {key.name!r}): max running {_or_dash(key.max_running)}, "
                    f"budget {_budget(key)}\n"
                )
            elif args.action == "list":
                listed = await keys.list_keys()
                spend = SpendService(settings, sessions, load_price_table(settings.spend.price_table_path))
                sys.stdout.write(_key_table(listed, await spend.key_spends(listed)))
            else:
                key = await keys.revoke(args.key)
                sys.stdout.write(f"revoked {key.id} ({key.prefix}, {key.name!r})\n")
                if not await keys.active_count() and not settings.access.auth_required:
                    sys.stderr.write("no active API key remains: /graphql is open again (set AUTH_REQUIRED=true)\n")
        except (ServiceError, PriceTableError) as exc:
            sys.stderr.write(f"darkroom api-key {args.action}: {exc}\n")
            return 1
        finally:
            await engine.dispose()
        return 0

    return asyncio.run(run())


def _limits(args: argparse.Namespace, settings: Settings) -> Any:
    """The key limits the options give; on create, a budget without --period counts over BUDGET_PERIOD."""
    from server.services.access.api_keys import KeyLimits

    limits = KeyLimits()
    if args.max_running is not None:
        limits = dataclasses.replace(limits, max_running=args.max_running)
    if getattr(args, "no_max_running", False):
        limits = dataclasses.replace(limits, max_running=None)
    if args.budget is not None:
        limits = dataclasses.replace(limits, budget_amount=args.budget)
        if args.action == "create" and args.period is None:
            limits = dataclasses.replace(limits, budget_period=settings.spend.budget_period)
    if args.period is not None:
        limits = dataclasses.replace(limits, budget_period=args.period)
    if getattr(args, "no_budget", False):
        limits = dataclasses.replace(limits, budget_amount=None, budget_period=None)
    return limits


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _budget(key: Any) -> str:
    return "-" if key.budget_amount is None else f"{key.budget_amount:g}/{key.budget_period or 'month'}"


def _key_table(keys: list[Any], spends: dict[Any, Any]) -> str:
    def when(at: Any) -> str:
        return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"

    rows = [("ID", "PREFIX", "NAME", "CREATED", "LAST USED", "STATUS", "MAX RUNNING", "BUDGET", "PERIOD", "SPENT")]
    for key in keys:
        status = f"revoked {when(key.revoked_at)}" if key.revoked_at else "active"
        spend = spends.get(key.id)
        budget = "-" if key.budget_amount is None else f"{key.budget_amount:g} {spend.currency if spend else ''}"
        rows.append(
            (
                str(key.id),
                key.prefix,
                key.name,
                when(key.created_at),
                when(key.last_used_at),
                status,
                _or_dash(key.max_running),
                budget.strip(),
                spend.period if spend else "-",
                f"{spend.amount:.4f} {spend.currency}" if spend else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darkroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", help="interface to bind (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default PORT or 8000)")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker", help="run the poller, the downloader and the periodic cleanup, without the API"
    )
    worker.add_argument("--host", help="interface /healthz, /readyz and /metrics bind to (default HOST or 127.0.0.1)")
    worker.add_argument("--port", type=int, help="port they listen on (default PORT or 8000)")
    worker.set_defaults(run=_worker)

    names = list(ADAPTERS)
    simulator = commands.add_parser("simulator", help="run a provider's simulator on its own")
    simulator.add_argument(
        "--provider", choices=names, default=names[0], help=f"the provider it plays (default {names[0]})"
    )
    simulator.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    simulator.add_argument("--port", type=int, help="port (default SIMULATOR_PORT or 8001)")
    simulator.add_argument(
        "--public-url",
        help="where Darkroom processes reach it, e.g. http://simulator:8001 (default http://HOST:PORT)",
    )
    simulator.add_argument(
        "--allow-private-inputs",
        action="store_true",
        help="fetch input files from loopback and private hosts, which the providers refuse (default: refuse)",
    )
    simulator.set_defaults(run=_simulator)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(run=_migrate)

    export = commands.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", "-o", default="schema.graphql", help="file to write, or - for stdout")
    export.set_defaults(run=_export_schema)
    cleanup = commands.add_parser(
        "cleanup", help="apply the retention policy (MEDIA_RETENTION_DAYS, FAILED_GENERATION_RETENTION_DAYS, ...)"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    cleanup.set_defaults(run=_cleanup)

    api_key = commands.add_parser("api-key", help="create, list, update and revoke API keys")
    key_actions = api_key.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key and print its token (shown only once)")
    create.add_argument("name", nargs="?", help="what the key is for, e.g. the client's name")
    create.add_argument("--name", dest="name_option", metavar="NAME", help="the same, as an option")
    _limit_options(create)
    update = key_actions.add_parser("update", help="change a key's budget and how many generations it may run")
    update.add_argument("key", help="the key's id (or its first characters) or its prefix (drk_...)")
    _limit_options(update)
    update.add_argument("--no-budget", action="store_true", help="remove the key's budget")
    update.add_argument(
        "--no-max-running", action="store_true", help="remove the key's own limit (MAX_RUNNING_PER_KEY applies)"
    )
    key_actions.add_parser("list", help="list keys (never their tokens), their limits and this period's spend")
    revoke = key_actions.add_parser("revoke", help="revoke a key: its requests are refused, its sockets closed")
    revoke.add_argument("key", help="the key's id (or its first characters) or its prefix (drk_...)")
    api_key.set_defaults(run=_api_key)
    return parser


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        type=float,
        metavar="AMOUNT",
        help="most the key may spend per period, in the price table's currency; a start whose estimate would "
        "pass it is refused (BUDGET_EXCEEDED)",
    )
    parser.add_argument(
        "--period",
        choices=("day", "week", "month"),
        help="the calendar period (UTC) the budget counts over (default on create: BUDGET_PERIOD)",
    )
    parser.add_argument(
        "--max-running", type=int, metavar="N", help="most generations the key may have running at once"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    return int(args.run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
