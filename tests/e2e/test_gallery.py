"""The gallery at /gallery in a real browser: Debian's Chromium, driven by Playwright, against a live server.

Submit a prompt, watch the progress bar move and the image appear, animate it and play the video; drop
the page's connection and check the feed resumes from its cursor; then the unhappy paths (a failed
generation run again, a failed download retried, a cancel), the API key field and a model chosen while
its inputs still load; and your own files: an image dropped on the page and a video picked, uploaded as
GraphQL multipart requests, the image animated through the Animate form, and a forged file refused; and the
live progress of a card: its phases (booting before running), its steps and time left, and its previews.
Playwright's own browser downloads are not used: Chromium is the system's (`apt-get install chromium`;
CHROMIUM_PATH points elsewhere). Without it, or without the playwright package, the tests skip outside CI and fail
under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.browser import CHROMIUM_ARGS, chromium
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL, get_generation, settled, start_generation
from tests.support.waiting import eventually
from tests.uploads.support import mp4, png

if TYPE_CHECKING:
    from playwright.async_api import FilePayload, Locator, Page

# The gallery needs one database to show; SQLite is enough.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "gallery"
TIMEOUT_MS = 60_000
# What Animate offers first: the most run image-to-video model.
VIDEO_PICK = "darkroom-sim/still-motion"
# Models that show live progress: one yields previews while it runs, one boots a cold worker first.
PREVIEW_MODEL = "darkroom-sim/preview-image"
BOOT_MODEL = "darkroom-sim/slow-boot-video"
# Page conditions are polled on a timer: animation frames can stall in a headless page on a loaded machine.
POLL_MS = 100

# Lets a test cut the page's WebSockets and hold them down, as a flaky network would: the page keeps
# retrying (against a closed port) until `restore()`.
SOCKET_SWITCH = """
(() => {
  const Native = window.WebSocket;
  const open = new Set();
  let down = false;
  class Switchable extends Native {
    constructor(url, protocols) {
      super(down ? "ws://127.0.0.1:1/" : url, protocols);
      open.add(this);
      this.addEventListener("close", () => open.delete(this));
    }
  }
  window.WebSocket = Switchable;
  window.testNetwork = {
    drop() { down = true; for (const socket of open) socket.close(); },
    restore() { down = false; },
  };
})();
"""


@pytest.fixture
async def page(request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser page; its last state is saved to test-artifacts/gallery/<test>.png, pass or fail."""
    executable = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_init_script(SOCKET_SWITCH)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            assert errors == [], f"uncaught errors in the page: {errors}"
        finally:
            await browser.close()


async def _open_gallery(page: Page, darkroom: Darkroom) -> None:
    from playwright.async_api import expect

    await page.goto(f"{darkroom.base_url}/gallery")
    await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
    await page.select_option("#model", IMAGE_MODEL)
    await expect(page.locator("#generate")).to_have_attribute("data-model", IMAGE_MODEL, timeout=TIMEOUT_MS)


async def _submit(page: Page, prompt: str, known: set[str]) -> Locator:
    """Fill the prompt, press Generate, and return the new generation's card once the feed shows it."""
    await page.fill("#input-prompt", prompt)
    await page.click("#submit")
    return await _new_card(page, known)


async def _new_card(page: Page, known: set[str]) -> Locator:
    """The card of a generation not in `known` (which it joins), once the feed has shown it."""
    handle = await page.wait_for_function(
        """(known) => [...document.querySelectorAll('.card')]
             .map((card) => card.dataset.generationId).find((id) => !known.includes(id))""",
        arg=sorted(known),
        polling=POLL_MS,
    )
    generation_id = str(await handle.json_value())
    known.add(generation_id)
    return page.locator(f'.card[data-generation-id="{generation_id}"]')


async def _start_animation(card: Locator, **values: str) -> None:
    """Fill the open Animate form's inputs (by name) once its model has loaded, and press Start."""
    from playwright.async_api import expect

    form = card.locator("form.animate-form")
    await expect(form).to_have_attribute("data-model", VIDEO_PICK, timeout=TIMEOUT_MS)
    for name, value in values.items():
        await form.locator(f'[name="{name}"]').fill(value)
    await form.locator('button[type="submit"]').click()


async def _configure(darkroom: Darkroom, **knobs: Any) -> None:
    response = await darkroom.http.patch("/simulator/_control/config", json=knobs)
    assert response.status_code == 200, response.text


async def test_gallery_generates_animates_and_resumes(start_darkroom: Callable[..., Any], page: Page) -> None:
    from playwright.async_api import expect

    async with start_darkroom(simulator_run_seconds=3.0) as darkroom:
        await _open_gallery(page, darkroom)
        known: set[str] = set()
        card = await _submit(page, "a lighthouse at dusk", known)

        # The progress bar moves while the generation runs: a value strictly between 0 and 1.
        progress = await page.wait_for_function(
            """(id) => {
                 const card = document.querySelector(`.card[data-generation-id="${id}"]`);
                 const bar = card?.querySelector('progress');
                 return card?.dataset.status === 'PROCESSING' && bar?.value > 0 && bar.value < 1 && bar.value;
               }""",
            arg=await card.get_attribute("data-generation-id"),
            polling=POLL_MS,
        )
        assert 0 < float(await progress.json_value()) < 1

        # The image appears and loads.
        await expect(card).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        image = card.locator("figure[data-status=READY] img")
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await image.element_handle(), polling=POLL_MS
        )
        await expect(card.locator("progress")).to_have_count(0)

        # Animate it (the form under the image, then Start): a video card appears and its video loads and plays.
        await card.locator("button.animate").click()
        await _start_animation(card)
        video_card = await _new_card(page, known)
        await expect(video_card).to_have_attribute("data-kind", "VIDEO")
        video = video_card.locator("figure[data-status=READY] video")
        await expect(video).to_have_count(1, timeout=TIMEOUT_MS)
        await page.wait_for_function(
            "(video) => video.readyState >= 1", arg=await video.element_handle(), polling=POLL_MS
        )
        played = await video.evaluate(
            """async (video) => {
                 video.muted = true;
                 await video.play();
                 await new Promise((resolve) => setTimeout(resolve, 600));
                 return video.currentTime;
               }"""
        )
        assert played > 0
        await expect(video_card.locator(".source img")).to_have_count(1)

        # Drop the connection and keep it down while a generation starts and finishes elsewhere; once the
        # page reconnects, the feed replays what it missed from its last cursor.
        await page.evaluate("window.testNetwork.drop()")
        await expect(page.locator("#connection")).to_have_text("reconnecting", timeout=TIMEOUT_MS)
        missed = await start_generation(darkroom, "made while the page was offline")

        async def finished() -> bool:
            return settled(await get_generation(darkroom, missed["id"]))

        await eventually(finished, timeout=60, interval=0.2)
        await expect(page.locator(f'.card[data-generation-id="{missed["id"]}"]')).to_have_count(0)
        await page.evaluate("window.testNetwork.restore()")
        await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
        replayed = page.locator(f'.card[data-generation-id="{missed["id"]}"]')
        await expect(replayed).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        await expect(replayed.locator("figure[data-status=READY] img")).to_have_count(1, timeout=TIMEOUT_MS)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)


async def test_gallery_shows_failures_with_retry_and_cancel(start_darkroom: Callable[..., Any], page: Page) -> None:
    from playwright.async_api import expect

    async with start_darkroom(simulator_run_seconds=3.0, download_max_attempts=2) as darkroom:
        await _open_gallery(page, darkroom)
        known: set[str] = set()

        # A failed generation shows its error and can be run again.
        await _configure(darkroom, fail_rate=1.0)
        failed = await _submit(page, "this one fails", known)
        await expect(failed).to_have_attribute("data-status", "FAILED", timeout=TIMEOUT_MS)
        await expect(failed.locator("p.error")).not_to_be_empty()

        # Run again, with downloads failing: the media shows its download error and a Retry button.
        await _configure(darkroom, fail_rate=0.0, download_failures=50)
        await failed.locator("button", has_text="Run again").click()
        rerun = await _new_card(page, known)
        media = rerun.locator("figure.media")
        await expect(media).to_have_attribute("data-status", "FAILED", timeout=TIMEOUT_MS)
        await expect(media.locator(".error")).to_contain_text("500")

        # Retry once the files serve: the image arrives.
        await _configure(darkroom, download_failures=0)
        await media.locator("button.retry").click()
        await expect(media).to_have_attribute("data-status", "READY", timeout=TIMEOUT_MS)
        await expect(media.locator("img")).to_have_count(1)

        # Cancel a running generation.
        running = await _submit(page, "this one is canceled", known)
        await running.locator("button", has_text="Cancel").click()
        await expect(running).to_have_attribute("data-status", "CANCELED", timeout=TIMEOUT_MS)
        await expect(running.locator("progress")).to_have_count(0)


async def test_gallery_shows_the_estimate_the_line_and_the_cost(start_darkroom: Callable[..., Any], page: Page) -> None:
    from playwright.async_api import expect

    async with start_darkroom(simulator_run_seconds=4.0, max_running_per_key=1) as darkroom:
        await _open_gallery(page, darkroom)
        # pixel-forge is priced per image: the estimate shows before anything is generated.
        await page.fill("#input-prompt", "a pier")
        await expect(page.locator("#estimate")).to_contain_text("Estimated cost", timeout=TIMEOUT_MS)
        known: set[str] = set()
        running = await _submit(page, "first in line", known)
        waiting = await _submit(page, "second in line", known)
        await expect(waiting).to_have_attribute("data-status", "QUEUED", timeout=TIMEOUT_MS)
        await expect(waiting.locator(".queued")).to_contain_text("#1 in line")
        last = await _submit(page, "third in line", known)
        await expect(last.locator(".queued")).to_contain_text("#2 in line", timeout=TIMEOUT_MS)
        # A queued generation is cancelled at once; the one behind it moves up.
        await waiting.locator("button", has_text="Cancel").click()
        await expect(waiting).to_have_attribute("data-status", "CANCELED", timeout=TIMEOUT_MS)
        await expect(last.locator(".queued")).to_contain_text("#1 in line", timeout=TIMEOUT_MS)
        # The first finishes and shows what it cost; the last then runs.
        await expect(running).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        await expect(running.locator("p.cost")).to_contain_text("USD")
        await expect(last).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)


async def test_gallery_asks_for_an_api_key_and_sends_it(start_darkroom: Callable[..., Any], page: Page) -> None:
    from playwright.async_api import expect

    async with start_darkroom() as darkroom:
        created = await darkroom.runtime.api_keys.create("gallery")
        await page.goto(f"{darkroom.base_url}/gallery")
        await expect(page.locator("#connection")).to_have_text("unauthorized", timeout=TIMEOUT_MS)
        await expect(page.locator("#form-error")).to_contain_text("API key")

        # The key goes to localStorage, the page reloads, and HTTP and the socket both carry it.
        await page.fill("#api-key", created.token)
        async with page.expect_navigation():
            await page.press("#api-key", "Enter")
        await _open_gallery(page, darkroom)
        card = await _submit(page, "with a key", set())
        await expect(card).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        assert await page.evaluate("localStorage.getItem('darkroom.apiKey')") == created.token


async def test_gallery_joins_the_load_of_a_model_chosen_again(start_darkroom: Callable[..., Any], page: Page) -> None:
    """Choosing the model whose inputs are still loading joins that load rather than redraw the form later."""
    from playwright.async_api import Route, expect

    release = asyncio.Event()
    loads: list[str] = []

    async def hold_the_first_load(route: Route) -> None:
        if "query Model(" in (route.request.post_data or ""):
            body: dict[str, Any] = route.request.post_data_json or {}
            loads.append(str(body["variables"]["ref"]))
            if len(loads) == 1:
                await release.wait()
        await route.continue_()

    async with start_darkroom() as darkroom:
        await page.add_init_script(f"localStorage.setItem('darkroom.model', {IMAGE_MODEL!r})")
        await page.route("**/graphql", hold_the_first_load)
        await page.goto(f"{darkroom.base_url}/gallery")
        await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
        await page.select_option("#model", IMAGE_MODEL)  # the remembered model, its inputs still loading
        release.set()
        await expect(page.locator("#generate")).to_have_attribute("data-model", IMAGE_MODEL, timeout=TIMEOUT_MS)
        await _submit(page, "typed once the form is drawn", set())
        assert loads == [IMAGE_MODEL]


# Drops a file on the page as a user dragging it from the desktop would: dragenter, dragover, then drop.
DROP_FILE = """
async ([bytes, name, type]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
  for (const kind of ["dragenter", "dragover", "drop"]) {
    document.querySelector("#gallery").dispatchEvent(
      new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }),
    );
  }
}
"""


async def test_gallery_uploads_a_dropped_image_and_animates_it(start_darkroom: Callable[..., Any], page: Page) -> None:
    from playwright.async_api import expect

    async with start_darkroom(simulator_run_seconds=1.0) as darkroom:
        await _open_gallery(page, darkroom)
        known: set[str] = set()

        # Dropped anywhere on the page: the upload's card appears with the image, ready to animate.
        content = png(96, 64, (30, 160, 90))
        await page.evaluate(DROP_FILE, [list(content), "dropped.png", "image/png"])
        card = await _new_card(page, known)
        await expect(card).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        await expect(card.locator("header .model")).to_have_text("uploaded")
        await expect(card.locator(".prompt")).to_have_text("dropped.png")
        image = card.locator("figure[data-status=READY] img")
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth === 96", arg=await image.element_handle(), polling=POLL_MS
        )
        await expect(page.locator("#upload-status")).to_have_text("Uploaded dropped.png.")

        # A text file named .png is refused: the page says why, and no card appears.
        forged: FilePayload = {"name": "forged.png", "mimeType": "image/png", "buffer": b"not an image\n" * 20}
        await page.set_input_files("#upload-file", files=[forged])
        await expect(page.locator("#upload-error")).to_contain_text("not an image", timeout=TIMEOUT_MS)
        assert await page.locator(".card").count() == 1

        # Animate: the form asks for the chosen model's inputs; the video is made from the uploaded image.
        await card.locator("button.animate").click()
        await expect(card.locator("form.animate-form")).to_have_attribute("data-model", VIDEO_PICK)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "gallery-upload-animate.png"), full_page=True)
        await _start_animation(card, prompt="drift to the left")
        video_card = await _new_card(page, known)
        await expect(video_card).to_have_attribute("data-kind", "VIDEO")
        await expect(video_card).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        video = video_card.locator("figure[data-status=READY] video")
        await expect(video).to_have_count(1, timeout=TIMEOUT_MS)
        await page.wait_for_function(
            "(video) => video.readyState >= 1", arg=await video.element_handle(), polling=POLL_MS
        )
        await expect(card.locator("form.animate-form")).to_have_count(0)
        done = await get_generation(darkroom, str(await video_card.get_attribute("data-generation-id")))
        assert done["input"]["prompt"] == "drift to the left"
        assert done["input"]["image"] == (await image.get_attribute("src"))

        # A short video picked with the file control becomes a video card of its own.
        clip_file: FilePayload = {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": mp4(seconds=1.0)}
        await page.set_input_files("#upload-file", files=[clip_file])
        clip = await _new_card(page, known)
        await expect(clip).to_have_attribute("data-kind", "VIDEO")
        await expect(clip.locator("figure[data-status=READY] video")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(clip.locator("button.animate")).to_have_count(0)


async def test_gallery_offers_the_models_of_both_providers_and_runs_a_fal_one(
    start_darkroom: Callable[..., Any], page: Page
) -> None:
    from playwright.async_api import expect

    fal_model = "fal-ai/flux/schnell"
    async with start_darkroom(providers="replicate,fal", simulator_run_seconds=1.0) as darkroom:
        await _open_gallery(page, darkroom)
        await expect(page.locator(f'#model option[value="{fal_model}"]')).to_have_text(f"{fal_model} (fal)")
        await expect(page.locator(f'#model option[value="{IMAGE_MODEL}"]')).to_have_text(f"{IMAGE_MODEL} (replicate)")
        await page.select_option("#model", fal_model)
        await expect(page.locator("#generate")).to_have_attribute("data-model", fal_model, timeout=TIMEOUT_MS)
        card = await _submit(page, "a kite over the dunes", set())
        await expect(card).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        image = card.locator("figure[data-status=READY] img")
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await image.element_handle(), polling=POLL_MS
        )


# Records, in order, every phase each card shows (its data-phase) and every preview <img> the gallery builds, so
# a test sees short-lived states its polling may miss, and that a preview is built once per URL.
WATCH_CARDS = """
() => {
  window.seenPhases = [];
  window.builtPreviews = [];
  const note = (card) => {
    const last = window.seenPhases.findLast((seen) => seen.id === card.dataset.generationId);
    if (card.dataset.phase && last?.phase !== card.dataset.phase) {
      const words = card.querySelector(".progress .phase")?.textContent ?? null;
      window.seenPhases.push({ id: card.dataset.generationId, phase: card.dataset.phase, words });
    }
  };
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      if (mutation.type === "attributes") note(mutation.target);
      for (const node of mutation.addedNodes) {
        if (!(node instanceof Element)) continue;
        if (node.matches(".card")) note(node);
        if (node.matches("figure.preview")) window.builtPreviews.push(node.dataset.url);
      }
    }
  }).observe(document.querySelector("#gallery"), {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-phase"],
  });
}
"""


async def _phases(page: Page, card: Locator) -> list[tuple[str, str | None]]:
    """The phases `card` went through, each with the words its progress line said (None without one)."""
    generation_id = await card.get_attribute("data-generation-id")
    seen: list[dict[str, Any]] = await page.evaluate("window.seenPhases")
    return [(item["phase"], item["words"]) for item in seen if item["id"] == generation_id]


async def test_gallery_card_shows_phases_steps_and_previews(start_darkroom: Callable[..., Any], page: Page) -> None:
    """A running card says what its job does: booting before running for a cold video model; for a model that
    yields previews, its steps and time left and its latest preview (served by Darkroom), then its output."""
    from playwright.async_api import expect

    # 3.5 s of running (the preview model's default 1 MP, 20 steps) yields a preview about every 0.9 s, and a
    # 2.5 s boot: long enough for a polling browser on a busy machine to see each state.
    async with start_darkroom(simulator_run_seconds=3.5) as darkroom:
        await _configure(darkroom, boot_seconds=2.5)
        await page.goto(f"{darkroom.base_url}/gallery")
        await expect(page.locator("#connection")).to_have_text("live", timeout=TIMEOUT_MS)
        await page.evaluate(WATCH_CARDS)
        known: set[str] = set()

        # The cold video model, started over GraphQL: its card says "booting" before "running".
        booting = await start_generation(darkroom, "fog over a lake", model=BOOT_MODEL)
        known.add(booting["id"])
        video = page.locator(f'.card[data-generation-id="{booting["id"]}"]')

        # The preview model, picked in the form.
        await page.select_option("#model", PREVIEW_MODEL)
        await expect(page.locator("#generate")).to_have_attribute("data-model", PREVIEW_MODEL, timeout=TIMEOUT_MS)
        card = await _submit(page, "a greenhouse at night", known)
        await expect(card).to_have_attribute("data-phase", "RUNNING", timeout=TIMEOUT_MS)
        await expect(card.locator(".phase")).to_have_text("running")
        await expect(card.locator(".steps")).to_have_text(re.compile(r"^step \d+ of 20$"), timeout=TIMEOUT_MS)
        await expect(card.locator(".eta")).to_have_text(re.compile(r"^(~\d+ s left|almost done)$"), timeout=TIMEOUT_MS)

        # A preview replaces the placeholder: an image Darkroom serves, which loads.
        src = await page.wait_for_function(
            """(id) => {
                 const img = document.querySelector(`.card[data-generation-id="${id}"] figure.preview img`);
                 return img?.complete && img.naturalWidth > 0 && img.src;
               }""",
            arg=await card.get_attribute("data-generation-id"),
            polling=POLL_MS,
        )
        preview_url = str(await src.json_value())
        assert preview_url.startswith(f"{darkroom.base_url}/media/previews/"), preview_url
        await expect(card.locator(".placeholder")).to_have_count(0)

        # Then the output replaces the preview, and the progress goes.
        await expect(card).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        image = card.locator("figure[data-status=READY] img")
        await expect(image).to_have_count(1, timeout=TIMEOUT_MS)
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await image.element_handle(), polling=POLL_MS
        )
        await expect(card.locator("figure.preview")).to_have_count(0)
        await expect(card.locator(".progress")).to_have_count(0)
        assert (await card.get_attribute("data-phase")) == "FINISHED"
        phases = await _phases(page, card)
        assert ("RUNNING", "running") in phases and phases[-1] == ("FINISHED", None), phases
        # Each preview <img> was built once: progress ticks between previews left it as it was.
        built: list[str] = await page.evaluate("window.builtPreviews")
        assert preview_url in built and len(built) == len(set(built)), built

        # The video's card booted, then ran, then finished with its video.
        await expect(video).to_have_attribute("data-status", "SUCCEEDED", timeout=TIMEOUT_MS)
        await expect(video.locator("figure[data-status=READY] video")).to_have_count(1, timeout=TIMEOUT_MS)
        phases = await _phases(page, video)
        assert ("BOOTING", "booting") in phases and ("RUNNING", "running") in phases, phases
        assert phases.index(("BOOTING", "booting")) < phases.index(("RUNNING", "running")), phases
