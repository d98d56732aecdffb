"""`darkroom serve`, plus a count of the SQL statements the process has executed.

Used by the reads benchmark only: a SQLAlchemy event listener counts every statement sent to the
database, and GET /_bench/sql-statements answers the running total. Everything else is the plain app,
served exactly as `darkroom serve` serves it.

    python -m benchmarks.sqlcount serve --port 8123
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from server.app import create_app
from server.log import configure_logging
from server.settings import Settings

COUNTER_PATH = "/_bench/sql-statements"
_statements = 0


@event.listens_for(Engine, "before_cursor_execute")
def _count(*_args: Any) -> None:
    global _statements
    _statements += 1


class CountingApp:
    """The app, with one extra route answering the statement count."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == COUNTER_PATH:
            body = json.dumps({"statements": _statements}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.sqlcount")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings()
    settings.server.port = args.port
    configure_logging(settings.server.log_level, settings.server.log_format)
    uvicorn.run(
        CountingApp(create_app(settings)),
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        ws="websockets-sansio",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
