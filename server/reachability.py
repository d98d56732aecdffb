"""Whether the providers can reach this server, decided once: it chooses between our own URLs and webhooks,
or uploads, data: URIs and the poller.

A host on loopback, a private or link-local network, or under a name only a local network resolves
(``localhost``, ``*.localhost``, ``*.local``, ``*.internal``, a name without a dot) is out of a hosted
provider's reach. `non_public_reason` says why a host is such; the simulators use it too, to refuse such
inputs as the providers do.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from server.settings import Settings

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def non_public_reason(host: str) -> str | None:
    """Why `host` (a name or a literal IP) cannot be reached from the internet; None when it may be."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        return "no host"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(".localhost"):
            return "a loopback name"
        for suffix in LOCAL_SUFFIXES:
            if name.endswith(suffix):
                return f"a local network name ({suffix})"
        if "." not in name:
            return "a name without a domain, which only a local network resolves"
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private network address"
    if address.is_unspecified or address.is_reserved or address.is_multicast or not address.is_global:
        return "not a public address"
    return None


def link_local_reason(host: str) -> str | None:
    """ "a link-local address" when `host` is one (a cloud's metadata service lives there); else None."""
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return "a link-local address" if address.is_link_local else None


def is_public_host(host: str) -> bool:
    return non_public_reason(host) is None


@dataclass(frozen=True)
class Reachability:
    """How the provider reaches this server: at `base_url`, or (None) not at all."""

    base_url: str | None
    # Why it cannot, for the startup log; None when it can.
    problem: str | None = None

    @property
    def own_urls(self) -> bool:
        """The provider fetches our media URLs itself, so media inputs are sent as those URLs."""
        return self.base_url is not None

    def webhook_url(self, path: str) -> str | None:
        """Where webhooks are delivered; None when they could never arrive, and the poller carries each job."""
        return f"{self.base_url}{path}" if self.base_url else None


def reachability(settings: Settings) -> Reachability:
    """Whether (and where) the provider `settings` name reaches this server.

    Embedded simulators run in this process and reach whatever address we serve on (when every provider
    is one; a real provider beside them decides, and they are told the same). Otherwise
    PUBLIC_URL is the only address offered, and only when its host is public, unless PUBLIC_URL_REACHABLE
    says the provider shares our network (then the serving address does, too, when PUBLIC_URL is unset).
    """
    if settings.only_embedded_simulators or settings.server.public_url_reachable:
        return Reachability(settings.base_url())
    public_url = settings.server.public_url
    if not public_url:
        return Reachability(None, "PUBLIC_URL is unset")
    reason = non_public_reason(urlparse(public_url).hostname or "")
    if reason is not None:
        host = urlparse(public_url).hostname or public_url
        return Reachability(None, f"PUBLIC_URL {public_url} names {host}, {reason}")
    return Reachability(settings.base_url())


def log_reachability(settings: Settings) -> None:
    """Say at startup how media inputs and progress travel when the provider cannot reach us."""
    reach = reachability(settings)
    if reach.problem is None:
        return
    detail = (
        "media inputs are uploaded through the provider's files API (or sent inline as data: URIs when "
        "small) instead of as this server's URLs, and no webhooks are requested: the poller follows "
        "every generation"
    )
    if settings.server.public_url:
        logger.warning(
            "%s, which the provider cannot reach: %s. If it can (a provider on the same network), set "
            "PUBLIC_URL_REACHABLE=true.",
            reach.problem,
            detail,
        )
    else:
        logger.info("%s: %s. Set PUBLIC_URL to an address the provider reaches.", reach.problem, detail)
