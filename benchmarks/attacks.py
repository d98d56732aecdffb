"""The hostile-load benchmark's attacks: the requests an attacker sends, as bytes, and what each answer counts as.

Every request goes to the server under test on 127.0.0.1; the files hostile outputs point at are served by
a file host of the benchmark's own, on 127.0.0.1 too. Each attack is built fresh when it is sent (a
webhook's signature carries its time); an answer is `refused` (a 4xx, GraphQL errors, or userErrors),
`accepted` (anything else under 500), `server_error` (5xx) or `no_answer` (none within ATTACK_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.clients import IMAGE_MODEL, START, HttpConnection, Webhook, prediction_body

ATTACK_TIMEOUT_SECONDS = 60.0
JSON_HEADERS = {"content-type": "application/json"}
WEBHOOK_PATH = "/webhooks/replicate"
VERDICTS = ("refused", "accepted", "server_error", "no_answer")


@dataclass(frozen=True)
class Attack:
    """One hostile request: its name, its family (inputs, outputs, aliases, cursors, upload) and its bytes."""

    name: str
    family: str
    path: str
    body: bytes
    headers: dict[str, str]


def verdict(status: int, body: bytes) -> str:
    """What the server's answer to an attack counts as (see the module's docstring)."""
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "refused"
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        answer = json.loads(body)
        if answer.get("errors"):
            return "refused"
        for payload in (answer.get("data") or {}).values():
            if isinstance(payload, dict) and payload.get("userErrors"):
                return "refused"
    return "accepted"


# --- files hostile outputs point at ----------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 20_000) -> bytes:
    """A valid PNG of side x side black pixels (1 bit each) in about 60 KiB: 400 million pixels, 50 MB of
    image data once inflated, several times Pillow's own decompression-bomb limit."""
    row = bytes(1 + side // 8)  # a filter byte, then the row's bits
    deflate = zlib.compressobj(9)
    block = row * 500
    parts = [deflate.compress(block) for _ in range(side // 500)]
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def small_png() -> bytes:
    """An ordinary 8 x 8 PNG: the stored media the alias query walks."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 80, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


HTML_PAGE = b"<!doctype html><html><body><script>fetch('/graphql')</script>not an image</body></html>"
SVG_SCRIPT = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"><script>alert(1)</script></svg>'


@dataclass
class FileHost:
    """A bare HTTP server on 127.0.0.1 serving a few files by name, each with the content type it claims."""

    base_url: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@contextlib.asynccontextmanager
async def file_host(files: dict[str, tuple[bytes, str]]) -> AsyncIterator[FileHost]:
    """Serve `files` (name: body, content type) until the block ends; unknown names get a 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            name = request.split(b" ", 2)[1].decode("latin-1").lstrip("/")
            body, content_type = files.get(name, (b"", ""))
            status = "200 OK" if content_type else "404 Not Found"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type or 'text/plain'}\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield FileHost(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", files)
    finally:
        server.close()


# --- the attacks -----------------------------------------------------------------------------------


def _graphql(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


def _start_with_raw_input(raw_input: str) -> bytes:
    """startGeneration with `raw_input` written into the JSON body as it is (numbers JSON cannot round-trip)."""
    return (
        f'{{"query": {json.dumps(START)}, "variables": {{"model": {json.dumps(IMAGE_MODEL)}, "input": {raw_input}}}}}'
    ).encode()


def input_attacks() -> list[Attack]:
    """(a) startGeneration with absurd numbers, a 900 KB prompt and deeply nested JSON."""
    raw = {
        "num_outputs 1e300000 (JSON number)": '{"prompt": "a", "num_outputs": 1e300000}',
        'num_outputs "1e300000" (string)': '{"prompt": "a", "num_outputs": "1e300000"}',
        "num_outputs of 5,000 digits": '{"prompt": "a", "num_outputs": ' + "9" * 5000 + "}",
        "num_outputs NaN": '{"prompt": "a", "num_outputs": NaN}',
        "num_outputs -1e308": '{"prompt": "a", "num_outputs": -1e308}',
        "width 1e9, height 1e9": '{"prompt": "a", "width": 1000000000, "height": 1000000000}',
        "900 KB prompt": json.dumps({"prompt": "x" * 900_000}),
        "input nested 5,000 objects deep": '{"prompt": "a", "extra": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
        "input nested 100,000 arrays deep": '{"prompt": "a", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}",
    }
    attacks = [
        Attack(name, "inputs", "/graphql", _start_with_raw_input(text), JSON_HEADERS) for name, text in raw.items()
    ]
    literal = (
        f'mutation {{ startGeneration(input: {{model: "{IMAGE_MODEL}", '
        'input: {prompt: "a", num_outputs: 1e300000}}) { generation { id } userErrors { code } } }'
    )
    attacks.append(
        Attack("num_outputs 1e300000 (GraphQL literal)", "inputs", "/graphql", _graphql(literal), JSON_HEADERS)
    )
    return attacks


ALIAS_QUERY = (
    "query Aliases {\n"
    + "".join(
        f"  a{index}: generations(first: 100) {{ edges {{ node {{ media {{ generation {{ media {{ generation "
        f"{{ media {{ id }} }} }} }} }} }} }} }}\n"
        for index in range(30)
    )
    + "}"
)


def alias_attacks() -> list[Attack]:
    """(c) 30 aliases of a page of 100 generations, each walking media and generation back and forth."""
    return [
        Attack(
            "30 aliases of nested generations(first: 100)", "aliases", "/graphql", _graphql(ALIAS_QUERY), JSON_HEADERS
        )
    ]


CURSOR_QUERY = "query Page($after: String) { generations(first: 10, after: $after) { edges { cursor node { id } } } }"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def cursor_attacks() -> list[Attack]:
    """(d) generations after crafted cursors: not base64, not UTF-8, out-of-range dates, huge and injected ones."""
    cursors = {
        "cursor not base64": "!!!not*base64!!!",
        "cursor not UTF-8": _b64(b"\xff\xfe\xfd|\xc3\x28"),
        "cursor year 9999, +14:00": _b64(f"9999-12-31T23:59:59+14:00|{uuid.uuid4()}".encode()),
        "cursor year 0001, -14:00": _b64(f"0001-01-01T00:00:00-14:00|{uuid.uuid4()}".encode()),
        "cursor SQL text": _b64(b"2026-01-01T00:00:00|' OR 1=1; DROP TABLE generations; --"),
        "cursor 1,000 parts": _b64("|".join(["2026-01-01T00:00:00"] * 1000).encode()),
        "cursor of 600 KB": _b64(b"2026-01-01T00:00:00|" + b"0" * 450_000),
        "cursor offset 1e300000": _b64(b"1e300000"),
    }
    return [
        Attack(name, "cursors", "/graphql", _graphql(CURSOR_QUERY, {"after": cursor}), JSON_HEADERS)
        for name, cursor in cursors.items()
    ]


UPLOAD = "mutation Upload($file: Upload!) { uploadMedia(input: {file: $file}) { media { id } userErrors { code } } }"


def upload_attack(png: bytes) -> Attack:
    """(e) uploadMedia with a pixel bomb, as the GraphQL multipart request spec sends it."""
    boundary = f"darkroom-bench-{uuid.uuid4().hex}"
    operations = json.dumps({"query": UPLOAD, "variables": {"file": None}})
    fields = [
        (f'Content-Disposition: form-data; name="operations"\r\n\r\n{operations}').encode(),
        b'Content-Disposition: form-data; name="map"\r\n\r\n{"0": ["variables.file"]}',
        b'Content-Disposition: form-data; name="0"; filename="bomb.png"\r\nContent-Type: image/png\r\n\r\n' + png,
    ]
    body = b"".join(f"--{boundary}\r\n".encode() + part + b"\r\n" for part in fields) + f"--{boundary}--\r\n".encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}", "apollo-require-preflight": "true"}
    return Attack("pixel-bomb upload", "upload", "/graphql", body, headers)


OUTPUT_KINDS = ("HTML page", "SVG data: URI", "decompression-bomb PNG")


def output_attack(kind: str, secret: str, prediction_id: str, host: FileHost) -> Attack:
    """(b) a signed webhook finishing `prediction_id` with one hostile output of `kind`."""
    url = {
        "HTML page": host.url("page.html"),
        "SVG data: URI": "data:image/svg+xml;base64," + base64.b64encode(SVG_SCRIPT).decode(),
        "decompression-bomb PNG": host.url("bomb.png"),
    }[kind]
    hook = Webhook.signed(secret, prediction_body(prediction_id, "succeeded", "", [url]))
    return Attack(f"webhook output: {kind}", "outputs", WEBHOOK_PATH, hook.body, hook.headers)


# --- sending them ---------------------------------------------------------------------------------


@dataclass
class Attacker:
    """Sends attacks over a few keep-alive connections, one request at a time on each, and tallies verdicts."""

    host: str
    port: int
    connections: int = 2
    verdicts: dict[str, Counter[str]] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    sent: int = 0

    async def run(self, attacks: list[Callable[[], Attack]], until: float) -> None:
        """Send each attack (built when its turn comes) in order, until all are sent or the loop's clock
        passes `until`; each answer waited for up to ATTACK_TIMEOUT_SECONDS."""
        queue = list(reversed(attacks))
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            connection = HttpConnection(self.host, self.port)
            try:
                while queue and loop.time() < until:
                    attack = queue.pop()()
                    self.sent += 1
                    self.families[attack.name] = attack.family
                    outcome = await self._send(connection, attack)
                    self.verdicts.setdefault(attack.name, Counter())[outcome] += 1
            finally:
                await connection.close()

        await asyncio.gather(*(worker() for _ in range(self.connections)))

    @staticmethod
    async def _send(connection: HttpConnection, attack: Attack) -> str:
        try:
            async with asyncio.timeout(ATTACK_TIMEOUT_SECONDS):
                status, body = await connection.request("POST", attack.path, attack.body, attack.headers)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            await connection.close()  # a late answer must not be read as the next request's
            return "no_answer"
        return verdict(status, body)

    def totals(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for outcomes in self.verdicts.values():
            counts.update(outcomes)
        return {name: counts[name] for name in VERDICTS}

    def by_family(self) -> dict[str, dict[str, int]]:
        families: dict[str, Counter[str]] = {}
        for name, outcomes in self.verdicts.items():
            families.setdefault(self.families[name], Counter()).update(outcomes)
        return {family: dict(counts) for family, counts in sorted(families.items())}
