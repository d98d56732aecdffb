"""GraphiQL at /graphql in a real browser, with every request off this machine blocked.

The page must load everything from Darkroom (the vendored builds in server/static/graphiql/vendor/): the
editor renders, a query runs and shows its result, a `generation(id)` subscription streams its states
over graphql-transport-ws, and an API key in the Headers tab opens a closed server, for HTTP and for the
WebSocket's connection_init. Debian's Chromium, driven by Playwright (see tests/e2e/browser.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

from tests.auth.support import new_key
from tests.e2e.browser import CHROMIUM_ARGS, chromium
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL, start_generation

if TYPE_CHECKING:
    from playwright.async_api import Page, Route

# The page needs one database to show; SQLite is enough.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "graphiql"
TIMEOUT_MS = 60_000
POLL_MS = 100
LOCAL_HOSTS = ("127.0.0.1", "localhost")

# Records every WebSocket the page opens: the subprotocol the server picked, the frames each way, the close.
SOCKET_LOG = """
(() => {
  const Native = window.WebSocket;
  window.testSockets = [];
  class Recorded extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const entry = { url: String(url), protocol: null, sent: [], received: [], closeCode: null };
      window.testSockets.push(entry);
      this.addEventListener("open", () => { entry.protocol = this.protocol; });
      this.addEventListener("message", (event) => entry.received.push(String(event.data)));
      this.addEventListener("close", (event) => { entry.closeCode = event.code; });
      const send = this.send.bind(this);
      this.send = (data) => { entry.sent.push(String(data)); send(data); };
    }
  }
  window.WebSocket = Recorded;
})();
"""

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESULT = ".graphiql-response .CodeMirror"


class Offline:
    """What the page asked of the network: every URL, and those refused for leaving this machine."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        self.blocked: list[str] = []
        self.console_errors: list[str] = []


@pytest.fixture
async def offline() -> Offline:
    return Offline()


@pytest.fixture
async def page(request: pytest.FixtureRequest, offline: Offline) -> AsyncIterator[Page]:
    """A fresh page that can reach only this machine; its last state goes to test-artifacts/graphiql/."""
    executable = chromium()
    from playwright.async_api import async_playwright

    async def only_this_machine(route: Route) -> None:
        if urlparse(route.request.url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            offline.blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            await context.route("**/*", only_this_machine)
            await context.add_init_script(SOCKET_LOG)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda sent: offline.requested.append(sent.url))
            page.on(
                "console",
                lambda message: offline.console_errors.append(message.text) if message.type == "error" else None,
            )
            yield page
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
            assert errors == [], f"uncaught errors in the page: {errors}"
        finally:
            await browser.close()


async def _open(page: Page, darkroom: Darkroom) -> None:
    from playwright.async_api import expect

    await page.goto(f"{darkroom.base_url}/graphql")
    await expect(page.locator(QUERY_EDITOR)).to_be_visible()
    await expect(page.locator(".graphiql-execute-button")).to_be_visible()


async def _type_into(page: Page, editor: str, text: str) -> None:
    """Replace an editor's text the way a user pastes it."""
    await page.locator(editor).click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


async def _run(page: Page, operation_name: str, document: str) -> None:
    """Put `document` in the query editor and run it, once GraphiQL has taken it in (its tab is named after it)."""
    from playwright.async_api import expect

    await _type_into(page, QUERY_EDITOR, document)
    await expect(page.locator(".graphiql-tab-active")).to_contain_text(operation_name)
    await page.locator(".graphiql-execute-button").click()


async def _result(page: Page) -> str:
    return str(await page.evaluate("(selector) => document.querySelector(selector).CodeMirror.getValue()", RESULT))


async def _result_contains(page: Page, text: str) -> None:
    await page.wait_for_function(
        "([selector, text]) => document.querySelector(selector).CodeMirror.getValue().includes(text)",
        arg=[RESULT, text],
        polling=POLL_MS,
    )


async def _set_headers(page: Page, headers: dict[str, str]) -> None:
    await page.get_by_role("button", name="Headers", exact=True).click()
    await _type_into(page, HEADERS_EDITOR, json.dumps(headers))
    # The headers are persisted (shouldPersistHeaders) once GraphiQL has taken them in.
    await page.wait_for_function(
        "(token) => Object.keys(localStorage).some((key) => key.endsWith('headers')"
        " && (localStorage.getItem(key) || '').includes(token))",
        arg=next(iter(headers.values())),
        polling=POLL_MS,
    )


async def _sockets(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("() => window.testSockets"))


def _messages(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in frames]


def _assert_stayed_on_this_machine(offline: Offline) -> None:
    assert offline.blocked == [], f"the page reached for the network: {offline.blocked}"
    elsewhere = [url for url in offline.requested if urlparse(url).hostname not in LOCAL_HOSTS]
    assert elsewhere == [], elsewhere
    policy = [text for text in offline.console_errors if "Content Security Policy" in text]
    assert policy == [], policy


MODELS = "query Models { models(kind: IMAGE, first: 10) { edges { node { ref kind } } } }"


def _follow(generation_id: str) -> str:
    return f'subscription Follow {{ generation(id: "{generation_id}") {{ status progress media {{ status }} }} }}'


async def test_graphiql_renders_offline_runs_a_query_and_streams_a_subscription(
    start_darkroom: Callable[..., Any], page: Page, offline: Offline
) -> None:
    from playwright.async_api import expect

    async with start_darkroom(simulator_run_seconds=3.0) as darkroom:
        await _open(page, darkroom)
        assert await page.title() == "Darkroom GraphiQL"
        # The explorer plugin lists the schema GraphiQL introspected.
        await page.get_by_role("button", name="Show GraphiQL Explorer").click()
        explorer = page.locator(".docExplorerWrap")
        await expect(explorer).to_contain_text("startGeneration")
        await expect(explorer).to_contain_text("generationEvents")

        await _run(page, "Models", MODELS)
        await _result_contains(page, IMAGE_MODEL)
        assert json.loads(await _result(page))["data"]["models"]["edges"], await _result(page)

        generation = await start_generation(darkroom, "followed in GraphiQL")
        await _run(page, "Follow", _follow(generation["id"]))
        await _result_contains(page, '"PROCESSING"')
        await _result_contains(page, '"SUCCEEDED"')

        sockets = await _sockets(page)
        assert len(sockets) == 1, sockets
        socket = sockets[0]
        assert socket["protocol"] == "graphql-transport-ws", socket
        sent = _messages(socket["sent"])
        assert [message["type"] for message in sent[:2]] == ["connection_init", "subscribe"], sent
        received = _messages(socket["received"])
        assert received[0]["type"] == "connection_ack", received
        statuses = [m["payload"]["data"]["generation"]["status"] for m in received if m["type"] == "next"]
        assert statuses[0] in ("STARTING", "PROCESSING") and statuses[-1] == "SUCCEEDED", statuses
        assert "PROCESSING" in statuses, statuses
        progress = [
            m["payload"]["data"]["generation"]["progress"] or 0.0
            for m in received
            if m["type"] == "next" and m["payload"]["data"]["generation"]["status"] == "PROCESSING"
        ]
        assert progress == sorted(progress), progress
    _assert_stayed_on_this_machine(offline)


async def test_an_api_key_in_the_headers_tab_opens_a_closed_server(
    start_darkroom: Callable[..., Any], page: Page, offline: Offline
) -> None:
    async with start_darkroom(simulator_run_seconds=1.0) as darkroom:
        client = await new_key(darkroom, "graphiql")
        await _open(page, darkroom)

        await _run(page, "Models", MODELS)
        await _result_contains(page, "UNAUTHENTICATED")

        await _set_headers(page, {"Authorization": f"Bearer {client.token}"})
        await _run(page, "Models", MODELS + " ")
        await _result_contains(page, IMAGE_MODEL)

        started = await client.query(
            'mutation($m: String!) { startGeneration(input: {model: $m, input: {prompt: "keyed"}})'
            " { generation { id } userErrors { code } } }",
            {"m": IMAGE_MODEL},
        )
        generation_id = started["data"]["startGeneration"]["generation"]["id"]
        await _run(page, "Follow", _follow(generation_id))
        await _result_contains(page, '"SUCCEEDED"')

        socket = (await _sockets(page))[-1]
        assert socket["protocol"] == "graphql-transport-ws", socket
        init = _messages(socket["sent"])[0]
        assert init["type"] == "connection_init", init
        assert init["payload"]["Authorization"] == f"Bearer {client.token}", init
    _assert_stayed_on_this_machine(offline)
