"""The web console in a real browser: Playwright for Python driving
Debian's chromium (never a downloaded browser). Every test fails if a page
logs a JavaScript error, a console error, or a request fails; screenshots
at 1280 and 390 px go to target/web-screenshots/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from web.console import start

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "target" / "web-screenshots"
README_SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run ./scripts/install-test-deps (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run ./scripts/install-test-deps (pip install -r tests/requirements.txt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Watched:
    """A page whose JavaScript errors, console errors, failed requests and
    dialogs are recorded; the test fails on any of them at the end."""

    def __init__(self, page, console):
        self.page = page
        self.console = console
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.urls: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", lambda message: message.type == "error" and self.errors.append(f"console: {message.text}"))
        page.on("requestfailed", self._failed)
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("dialog", self._dialog)

    def _failed(self, request):
        # A live stream the page itself closes when it navigates away is not
        # a failure.
        failure = request.failure or ""
        if "ERR_ABORTED" in failure and "/api/" in request.url:
            return
        self.errors.append(f"request failed: {request.url} {failure}")

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def sign_in(self):
        url = self.console.mint()
        self.page.goto(url)
        self.page.wait_for_selector("h1:text('Overview')")
        return url

    def shoot(self, name: str):
        SHOTS.mkdir(parents=True, exist_ok=True)
        for width in (1280, 390):
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        self.page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def watched(browser, tmp_path):
    stack, console = start(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20000)
    watched = Watched(page, console)
    try:
        yield watched
    finally:
        context.close()
        console.stop()
        stack.stop()
    assert not watched.errors, watched.errors
    assert not watched.dialogs, f"a script ran: {watched.dialogs}"
    logs = console.log() + (tmp_path / "gateway.log").read_text(errors="replace")
    for token in console.minted:
        assert token not in logs
        assert not any(token in url for url in watched.urls), "the token went into a request line"


def test_sign_in_with_the_one_time_url(watched):
    page = watched.page
    watched.sign_in()
    assert "#t=" not in page.url
    cookies = page.context.cookies()
    session = [cookie for cookie in cookies if cookie["name"] == "llmbasedos_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    # The page's script cannot read the cookie.
    assert "llmbasedos_session" not in page.evaluate("document.cookie")
    assert page.locator("#services-h").is_visible()
    watched.shoot("overview")


def test_a_used_link_does_not_sign_in_again(browser, watched):
    url = watched.sign_in()
    other = browser.new_context()
    try:
        page = other.new_page()
        messages: list[str] = []
        page.on("console", lambda message: messages.append(message.text))
        page.goto(url)
        page.wait_for_selector("#signin-status.problem")
        assert "used already" in page.locator("#signin-status").inner_text()
        assert not [cookie for cookie in other.cookies() if cookie["name"] == "llmbasedos_session"]
    finally:
        other.close()


def test_call_fs_read_from_its_form(watched):
    page = watched.page
    watched.sign_in()
    page.click("nav >> text=Tools")
    page.fill("#tool-search", "fs_read")
    page.click("#tool-list a[href='/tools/fs_read']")
    page.wait_for_selector("#tool-form")
    page.get_by_label("path", exact=False).first.fill("/hello.txt")
    page.click("#call")
    page.wait_for_selector("#result pre")
    assert "hello from the console test" in page.locator("#result").inner_text()
    watched.shoot("tool-fs-read")


def test_script_in_a_tool_description_a_file_name_and_a_result_is_text(watched):
    page = watched.page
    watched.sign_in()
    page.goto(watched.console.base + "/tools")
    page.wait_for_selector("#tool-list a[href='/tools/hostile_greet']")
    assert '<script>alert("tool description")</script>' in page.locator("#tool-list").inner_text()
    watched.shoot("tools")
    page.click("#tool-list a[href='/tools/hostile_greet']")
    assert "<img src=x onerror" in page.locator(".description").inner_text()
    assert page.locator("main img").count() == 0
    page.get_by_label("name", exact=False).first.fill("<b>bold</b>")
    page.click("#call")
    page.wait_for_selector("#result pre")
    assert "hello <b>bold</b> <script>alert('result')</script>" in page.locator("#result").inner_text()
    assert page.locator("#result b").count() == 0 and page.locator("#result script").count() == 0
    # A file whose name is markup, listed by fs_list.
    page.goto(watched.console.base + "/tools/fs_list")
    page.get_by_label("path", exact=False).first.fill("/")
    page.click("#call")
    page.wait_for_selector("#result pre")
    assert "<img src=x onerror=alert(1)><script>alert(2)<" in page.locator("#result").inner_text()
    assert page.locator("#result img").count() == 0


def test_progress_and_cancel_of_a_long_call(watched):
    page = watched.page
    watched.sign_in()
    page.goto(watched.console.base + "/tools/hostile_slow")
    page.get_by_label("steps", exact=False).first.fill("4")
    page.click("#call")
    page.wait_for_selector("#result pre")
    assert "counted to 4" in page.locator("#result").inner_text()
    assert "100 %" in page.locator("#progress-text").text_content()
    page.get_by_label("steps", exact=False).first.fill("50")
    page.click("#call")
    page.locator("#progress-text", has_text="%").wait_for()
    page.click("#cancel")
    page.locator("#result", has_text="Cancelled.").wait_for()


def test_overview_and_logs_say_what_to_do_without_a_service_manager(watched):
    page = watched.page
    watched.sign_in()
    assert "not available" in page.locator("#services-h + .problem, section .problem").first.inner_text()
    page.click("nav >> text=Logs")
    page.wait_for_selector("#log-filters")
    assert page.locator(".problem").count() >= 1
    page.click("nav >> text=Licence")
    page.wait_for_selector("#usage-h")
    watched.shoot("licence")


def test_keyboard_reaches_the_navigation_and_the_form(watched):
    page = watched.page
    watched.sign_in()
    page.goto(watched.console.base + "/tools/fs_read")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f1":
            break
    assert page.evaluate("document.activeElement.dataset.kind") in ("string", "enum", "integer", "boolean", "json")


def test_readme_screenshots_are_taken(watched):
    """The README's screenshots are taken by every run into target/; they
    replace the ones in docs/screenshots only when asked
    (LLMBASEDOS_UPDATE_SCREENSHOTS=1), so a test run never changes the docs."""
    page = watched.page
    watched.sign_in()
    page.goto(watched.console.base + "/tools/fs_read")
    page.get_by_label("path", exact=False).first.fill("/hello.txt")
    page.click("#call")
    page.wait_for_selector("#result pre")
    watched.shoot("tool")
    for width in (1280, 390):
        shot = SHOTS / f"tool-{width}.png"
        assert shot.stat().st_size > 0, f"{shot} is empty"
    if os.environ.get("LLMBASEDOS_UPDATE_SCREENSHOTS") == "1":
        # The other pages' shots come from the tests before this one: run
        # the whole module when updating.
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        for name in ("overview-1280", "tools-1280", "tool-1280", "tool-390"):
            source = SHOTS / f"{name}.png"
            if source.exists():
                shutil.copy(source, README_SHOTS / f"web-{name}.png")


def test_service_pages_appear_only_for_installed_services(watched):
    page = watched.page
    watched.sign_in()
    page.goto(watched.console.base + "/tools")
    nav = page.locator("header nav").inner_text()
    # fs is there (its semantic index page), agent and sync are not.
    assert "Semantic index" in nav and "Workflows" not in nav and "Sync jobs" not in nav
    page.click("nav >> text=Semantic index")
    page.wait_for_selector("h2:text('Status')")
    assert page.locator("a[href='/tools/fs_search']").count() == 1
    watched.shoot("semantic")
    page.goto(watched.console.base + "/workflows")
    assert "not installed" in page.locator("main").inner_text()
