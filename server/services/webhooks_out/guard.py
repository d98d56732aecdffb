"""Where outgoing webhooks may go: URL rules at registration, and a connect-time guard on every connection.

A URL is checked when it is registered (its host resolved: every address must be public), but DNS can
change afterwards (rebinding), so every connection is checked again: the guard is an httpcore network
backend that resolves the host itself, refuses any non-public address, and connects to the address it
vetted. TLS still names the host (httpcore takes the SNI name from the URL, not from the address).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from server.reachability import non_public_reason

SCHEMES = ("http", "https")


class UrlRefused(Exception):
    """The URL may not be used; the message says why, for the caller."""

    def __init__(self, message: str, *, private: bool = False) -> None:
        super().__init__(message)
        self.private = private


def check_url_form(url: str, max_length: int) -> str:
    """The URL's host, when the URL has an acceptable form: http(s), a host, no credentials, bounded length."""
    if len(url) > max_length:
        raise UrlRefused(f"the URL is longer than {max_length} characters")
    if not url.isprintable() or any(char.isspace() for char in url):
        raise UrlRefused("the URL has spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("the URL does not parse") from None
    if parts.scheme not in SCHEMES:
        raise UrlRefused("the URL must be http or https")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL may not carry credentials")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if port == 0:
        raise UrlRefused("the URL's port is 0")
    return parts.hostname


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (a literal address is itself), or UrlRefused when it does not."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise UrlRefused(f"{host} does not resolve") from None
    return list(dict.fromkeys(str(address[0]) for *_, address in found))


def refusal_of(host: str, addresses: Iterable[str]) -> str | None:
    """Why `host` (with the addresses it resolved to) is not public; None when it and all of them are."""
    reason = non_public_reason(host)
    if reason is not None:
        return f"{host} is {reason}"
    for address in addresses:
        reason = non_public_reason(address)
        if reason is not None:
            return f"{host} resolves to {address}, {reason}"
    return None


async def check_url(url: str, *, max_length: int, allow_private: bool, resolve_seconds: float = 5.0) -> None:
    """Raise UrlRefused unless `url` may be registered as an endpoint (its host resolved within
    `resolve_seconds`, so a slow DNS server cannot hold the mutation)."""
    host = check_url_form(url, max_length)
    if allow_private:
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    reason = non_public_reason(host)
    if reason is not None:
        raise UrlRefused(f"{host} is {reason}; webhooks go to public addresses only", private=True)
    try:
        async with asyncio.timeout(resolve_seconds):
            addresses = await resolve(host, port)
    except TimeoutError:
        raise UrlRefused(f"{host} did not resolve within {resolve_seconds:g} s") from None
    reason = refusal_of(host, addresses)
    if reason is not None:
        raise UrlRefused(f"{reason}; webhooks go to public addresses only", private=True)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, connecting only to public addresses (all of them when `allow_private`)."""

    def __init__(self, *, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
        except UrlRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        if not self._allow_private:
            reason = refusal_of(host, addresses)
            if reason is not None:
                raise httpcore.ConnectError(f"refused: {reason}")
        error: Exception | None = None
        for address in addresses:
            try:
                # The vetted address, never the name again: a second lookup could answer otherwise.
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never sent to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def is_refusal(exc: BaseException) -> bool:
    """Whether a failed request was stopped by the guard (not by the receiver or the network)."""
    return isinstance(exc, httpx.ConnectError) and str(exc).startswith("refused: ")


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose connections go through GuardedBackend."""

    def __init__(self, *, allow_private: bool, max_connections: int = 100) -> None:
        super().__init__()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=max_connections,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def guarded_client(*, allow_private: bool, timeout_seconds: float, max_connections: int = 100) -> httpx.AsyncClient:
    """The client deliveries are sent with: guarded connections, short timeouts, no redirects followed."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, max_connections=max_connections),
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )
