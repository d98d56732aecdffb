"""The `darkroom` command: serve, simulator, migrate, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from server.log import configure_logging
from server.settings import Settings

logger = logging.getLogger("darkroom")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings.host = args.host or settings.host
    settings.port = args.port or settings.port
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws="websockets-sansio",
        timeout_graceful_shutdown=10,
    )
    return 0


def _simulator(settings: Settings, args: argparse.Namespace) -> int:
    from server.simulator import serve_simulator

    serve_simulator(settings, args.host or "127.0.0.1", args.port or settings.simulator_port)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darkroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", help="interface to bind (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default PORT or 8000)")
    serve.set_defaults(run=_serve)

    simulator = commands.add_parser("simulator", help="run the Replicate simulator on its own")
    simulator.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    simulator.add_argument("--port", type=int, help="port (default SIMULATOR_PORT or 8001)")
    simulator.set_defaults(run=_simulator)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(run=_migrate)

    export = commands.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", "-o", default="schema.graphql", help="file to write, or - for stdout")
    export.set_defaults(run=_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return int(args.run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
