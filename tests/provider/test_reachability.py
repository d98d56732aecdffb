"""Which hosts the provider cannot reach, and what Darkroom decides from PUBLIC_URL and PUBLIC_URL_REACHABLE."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from server.reachability import is_public_host, log_reachability, non_public_reason, reachability
from server.runtime import WEBHOOK_PATH
from server.settings import Settings

OUT_OF_REACH = [
    "127.0.0.1",
    "127.8.9.10",
    "localhost",
    "LOCALHOST.",
    "darkroom.localhost",
    "10.0.0.7",
    "192.168.1.20",
    "172.16.0.1",
    "172.31.255.254",
    "169.254.169.254",
    "0.0.0.0",
    "100.64.0.1",
    "::1",
    "[::1]",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "printer.local",
    "api.internal",
    "api",
]
IN_REACH = ["darkroom.example.com", "api.replicate.com", "8.8.8.8", "172.32.0.1", "2606:4700::1111"]


@pytest.mark.parametrize("host", OUT_OF_REACH)
def test_loopback_private_link_local_and_local_names_are_out_of_reach(host: str) -> None:
    assert not is_public_host(host)
    assert non_public_reason(host)


@pytest.mark.parametrize("host", IN_REACH)
def test_public_names_and_addresses_are_in_reach(host: str) -> None:
    assert is_public_host(host)
    assert non_public_reason(host) is None


def provider_settings(**overrides: Any) -> Settings:
    """A real provider's settings (a token, so no embedded simulator)."""
    values: dict[str, Any] = {"replicate_api_token": "r8_test", "public_url": None, "port": 8123}
    values.update(overrides)
    return Settings(**values)


def test_a_public_url_on_a_public_host_gets_webhooks_and_own_urls() -> None:
    reach = reachability(provider_settings(public_url="https://darkroom.example.com/"))
    assert reach.own_urls and reach.problem is None
    assert reach.webhook_url(WEBHOOK_PATH) == "https://darkroom.example.com/webhooks/{provider}"


@pytest.mark.parametrize(
    "public_url", ["http://localhost:8000", "http://127.0.0.1:8000", "http://192.168.1.5", "http://box.local:8000"]
)
def test_a_public_url_out_of_reach_gets_neither(public_url: str) -> None:
    reach = reachability(provider_settings(public_url=public_url))
    assert not reach.own_urls
    assert reach.webhook_url(WEBHOOK_PATH) is None
    assert reach.problem is not None and public_url in reach.problem


def test_no_public_url_gets_neither() -> None:
    reach = reachability(provider_settings())
    assert not reach.own_urls and reach.webhook_url(WEBHOOK_PATH) is None


def test_public_url_reachable_declares_a_local_address_reachable() -> None:
    reach = reachability(provider_settings(public_url="http://localhost:8000", public_url_reachable=True))
    assert reach.own_urls and reach.problem is None
    assert reach.webhook_url(WEBHOOK_PATH) == "http://localhost:8000/webhooks/{provider}"
    unset = reachability(provider_settings(public_url_reachable=True))
    assert unset.webhook_url(WEBHOOK_PATH) == "http://127.0.0.1:8123/webhooks/{provider}"


def test_the_embedded_simulator_needs_no_setting() -> None:
    for public_url in (None, "http://localhost:8123"):
        settings = Settings(replicate_api_token=None, public_url=public_url, port=8123)
        assert settings.embeds("replicate")
        reach = reachability(settings)
        assert reach.own_urls and reach.problem is None
        assert reach.webhook_url(WEBHOOK_PATH) == f"{public_url or 'http://127.0.0.1:8123'}/webhooks/{{provider}}"


def test_a_separate_simulator_is_a_provider_like_any_other() -> None:
    """No token but REPLICATE_API_BASE_URL: the simulator is another process, maybe another host."""
    settings = Settings(
        replicate_api_token=None, replicate_api_base_url="http://127.0.0.1:8001", public_url="http://localhost:8000"
    )
    assert not reachability(settings).own_urls


def test_startup_warns_once_saying_what_it_does_instead(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="server.reachability"):
        log_reachability(provider_settings(public_url="http://localhost:8000"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for words in ("http://localhost:8000", "loopback", "files API", "data: URI", "no webhooks", "PUBLIC_URL_REACHABLE"):
        assert words in message, message


def test_startup_is_quiet_when_the_provider_reaches_us(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="server.reachability"):
        log_reachability(provider_settings(public_url="https://darkroom.example.com"))
        log_reachability(provider_settings(public_url="http://localhost:8000", public_url_reachable=True))
    assert caplog.records == []


def test_without_a_public_url_startup_says_so_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="server.reachability"):
        log_reachability(provider_settings())
    (record,) = caplog.records
    assert record.levelno == logging.INFO and "PUBLIC_URL is unset" in record.getMessage()
