"""The doorbell between processes: after a commit, tell the others that the event log has grown.

A ring carries only the newest event id, never an event, so a lost ring costs a delay (each process also
reads the log on its own interval) and NOTIFY's payload limit does not matter. Rings are coalesced: a
burst of commits sends one message with the highest id, off the request's path.

broadcaster does not heal itself (its Postgres backend never LISTENs again after the server restarts,
and Redis pub/sub drops what is sent during an outage), so the doorbell checks itself: every
`check_seconds` it rings a check of its own and expects to hear it back. A check that does not come
back marks the doorbell down and reconnects with a fresh broadcaster; once connected again, `on_reconnect`
lets the tailer catch up before the doorbell counts as up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

from broadcaster import Broadcast

from server.events.redis_backend import RedisPubSubBackend
from server.periodic import periodic_task

logger = logging.getLogger(__name__)

CHECK_PREFIX = "check:"
CONNECT_TIMEOUT_SECONDS = 10.0
RECONNECT_BACKOFF_MAX_SECONDS = 5.0


class Doorbell:
    def __init__(
        self,
        url: str,
        channel: str,
        *,
        on_ring: Callable[[int], None],
        on_reconnect: Callable[[], Awaitable[object]],
        check_seconds: float,
    ) -> None:
        self.url = url
        self.channel = channel
        self._on_ring = on_ring
        self._on_reconnect = on_reconnect
        self._check_seconds = check_seconds
        self._token = uuid.uuid4().hex
        self._broadcast: Broadcast | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._heard_check = asyncio.Event()
        self._ring_wanted = asyncio.Event()
        self._pending_ring = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        # broadcaster's Postgres backend publishes on its one listening connection; asyncpg allows one
        # operation at a time per connection.
        self._publishing = asyncio.Lock()
        self.connected = False

    async def start(self) -> None:
        """Connect (a broker that cannot be reached at start is a configuration error, raised here)."""
        await self._connect()
        self.connected = True
        self._tasks = [
            asyncio.create_task(self._ring_forever(), name="doorbell-ringer"),
            periodic_task("doorbell-check", self._check_seconds, self._check_and_heal, self._stop, wait_first=True),
        ]
        logger.info("doorbell connected", extra={"broadcast": urlparse(self.url).scheme})

    async def stop(self) -> None:
        self.connected = False
        self._stop.set()
        for task in self._tasks:
            task.cancel()  # a reconnect in flight is abandoned
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    def ring(self, event_id: int) -> None:
        """Announce that the log holds events up to `event_id` (returns at once; sent in the background)."""
        self._pending_ring = max(self._pending_ring, event_id)
        self._ring_wanted.set()

    # --- connection --------------------------------------------------------------------------------
    async def _connect(self) -> None:
        broadcast = _broadcast(self.url)
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            await broadcast.connect()
            self._broadcast = broadcast
            self._subscribed.clear()
            self._listener = asyncio.create_task(self._listen(broadcast), name="doorbell-listener")
            await self._subscribed.wait()

    async def _disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._broadcast is not None:
            broadcast, self._broadcast = self._broadcast, None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await broadcast.disconnect()

    async def _listen(self, broadcast: Broadcast) -> None:
        async with broadcast.subscribe(self.channel) as subscriber:
            self._subscribed.set()
            async for message in subscriber:  # type: ignore[union-attr]
                if message is None:
                    continue
                text = str(message.message)
                if text.startswith(CHECK_PREFIX):
                    if text == CHECK_PREFIX + self._token:
                        self._heard_check.set()
                    continue
                try:
                    self._on_ring(int(text))
                except ValueError:
                    logger.warning("ignored a doorbell message that is not an event id")

    async def _publish(self, message: str) -> None:
        if self._broadcast is None:
            raise ConnectionError("the doorbell is not connected")
        async with self._publishing, asyncio.timeout(self._check_seconds):
            await self._broadcast.publish(self.channel, message)

    # --- background tasks --------------------------------------------------------------------------
    async def _ring_forever(self) -> None:
        while True:
            await self._ring_wanted.wait()
            self._ring_wanted.clear()
            if not self.connected:
                continue  # the other processes' tailers read on their own interval meanwhile
            try:
                await self._publish(str(self._pending_ring))
            except Exception as exc:
                logger.info("a doorbell ring was not sent", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def _check_and_heal(self) -> None:
        """Every `check_seconds`: if our own check does not come back, reconnect (until it succeeds)."""
        if await self._check():
            return
        self.connected = False
        logger.warning(
            "lost the broadcast connection; events are still delivered from the log every interval",
            extra={"broadcast": urlparse(self.url).scheme},
        )
        await self._reconnect()

    async def _check(self) -> bool:
        """Ring a check of our own and hear it back within `check_seconds`."""
        if self._listener is None or self._listener.done():
            return False
        self._heard_check.clear()
        try:
            await self._publish(CHECK_PREFIX + self._token)
            async with asyncio.timeout(self._check_seconds):
                await self._heard_check.wait()
        except Exception:
            return False
        return True

    async def _reconnect(self) -> None:
        delay = 0.2
        while True:
            await self._disconnect()
            try:
                await self._connect()
            except Exception as exc:
                logger.debug("broadcast reconnect failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_BACKOFF_MAX_SECONDS)
                continue
            # Whatever was rung while we were away is in the log: read it before counting as up.
            await self._on_reconnect()
            self.connected = True
            logger.info("broadcast connection restored", extra={"broadcast": urlparse(self.url).scheme})
            return


def _broadcast(url: str) -> Broadcast:
    """broadcaster for `url`: its own backends, but ours for Redis (see redis_backend.py)."""
    scheme = urlparse(url).scheme
    if scheme in ("redis", "rediss"):
        return Broadcast(backend=RedisPubSubBackend(url))
    # broadcaster's Postgres backend speaks asyncpg, which wants a plain postgresql:// URL.
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
    return Broadcast(url)
