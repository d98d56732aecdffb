"""Origins, scheme://host:port, and the allowlists written as them (REPLICATE_FILE_HOSTS).

A URL may be fetched only when its whole origin is allowed: the host alone would let in every port of it
(another service on the simulator's loopback address, say).
"""

from __future__ import annotations

from urllib.parse import urlparse

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the port filled in from the scheme; None for anything else."""
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        return None
    try:
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        return None
    return parsed.scheme, parsed.hostname.lower(), port


def written_origin(url: str) -> str:
    """`url` cut to its origin, as an allowlist entry or a message writes it (no path, query or credentials)."""
    origin = origin_of(url)
    if origin is None:
        return "?"
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def _origin_pattern(pattern: str) -> tuple[str, str, int] | None:
    """An allowlist entry, ``[scheme://]host[:port]``, as (scheme, host, port); None if malformed.

    The scheme defaults to https and the port to the scheme's, so a bare host name means what Replicate
    serves: https on 443. `host` may start with ``*.`` (any subdomain)."""
    text = pattern.strip().lower()
    if "://" not in text:
        text = "https://" + text
    if urlparse(text).path not in ("", "/"):
        return None
    return origin_of(text)


def origin_allowed(url: str, allowed: list[str]) -> bool:
    """Whether `url`'s origin (scheme, host and port) matches one of the `allowed` origin patterns."""
    origin = origin_of(url)
    if origin is None:
        return False
    scheme, host, port = origin
    for pattern in allowed:
        wanted = _origin_pattern(pattern)
        if wanted is None or wanted[0] != scheme or wanted[2] != port:
            continue
        if wanted[1] == host or (wanted[1].startswith("*.") and host.endswith(wanted[1][1:])):
            return True
    return False
