"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, one browser for the whole run of
tests/browser and a fresh context for every page; a console or page error fails the test; a failed test leaves a
screenshot of each of its pages in var/browser-failures/; `app` is the live server with real workers and the SMTP
catcher behind it."""

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from tests.browser.helpers import browser_errors, flush_events, watch_errors
from tests.fixtures.mail import Mailbox
from tests.fixtures.workers import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent.parent
FAILURES_DIR = ROOT / "var" / "browser-failures"
# (label, page) for every page a test opened: the failure hook screenshots them, the page fixture checks their errors.
OPEN_PAGES = pytest.StashKey[list]()
# Long enough for a page of the live server on two busy cores, short enough that a missing element fails quickly.
TIMEOUT_MS = 15_000
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="package", autouse=True)
def _orm_beside_playwright():
    # Playwright's sync API drives the browser from an asyncio event loop that it leaves marked as running in this
    # thread while the test runs (parked in a greenlet between calls). Django's ORM sees a running loop and refuses to
    # run (SynchronousOnlyOperation), although every query here is made synchronously by the test's own thread, never
    # from a coroutine, so the refusal has nothing to protect here. The switch is on only while tests/browser runs: the
    # browser is package-scoped too, so the rest of the suite runs with neither the loop nor the switch. Workers never
    # inherit it (tests/fixtures/workers.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="package")
def browser(_orm_beside_playwright):
    """One headless Chromium for all the browser tests (Debian's package: tests/services.sh installs it)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no chromium on PATH: tests/services.sh installs Debian's chromium package", pytrace=False)
    # Chromium's sandbox cannot start as root (the suite runs as root, as CI does).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, request):
    """`new_page(label="page", **context_options)` → a page in a context of its own (cookies, storage, viewport).

    At teardown, any console error or uncaught page error fails the test, unless the test is marked
    `allow_browser_errors` or said it expects that error (`helpers.expect_browser_error`); an expected error that never
    happened fails it too.
    """
    pages = request.node.stash.setdefault(OPEN_PAGES, [])
    contexts = []

    def make(label: str = "page", **context_options):
        context = browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        watch_errors(page)
        pages.append((label, page))
        return page

    yield make
    allow_unexpected = request.node.get_closest_marker("allow_browser_errors") is not None
    problems = []
    for label, page in pages:
        flush_events(page)
        errors = browser_errors(page)
        if not allow_unexpected and (unexpected := errors.unexpected()):
            problems.append(f"{label}: errors in the browser:\n  " + "\n  ".join(unexpected))
        if unmet := errors.unmet():
            problems.append(f"{label}: expected errors that did not happen: {unmet}")
    pages.clear()
    for context in contexts:
        context.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def page(new_page):
    """A desktop-sized page in a fresh context."""
    return new_page("page", **DESKTOP)


@pytest.fixture
def phone_page(new_page):
    """A phone: 390 × 844 CSS pixels, mobile viewport handling, touch."""
    return new_page("phone", **PHONE)


# --- The service behind the pages ---------------------------------------------------------------------------------
@dataclass
class App:
    url: str  # the live server, e.g. http://127.0.0.1:41234
    mailbox: Mailbox
    workers: dict[str, WorkerProcess]


@pytest.fixture
def app(live_server, live_workers, mailbox, settings) -> App:
    """The whole service for a browser: the live server (tests/fixtures/services.py: a thread on 127.0.0.1, the
    MariaDB test database, committed rows), the real convert and notify workers, and the SMTP catcher.

    Links this process builds point at the live server. The workers, shared by the whole session, build theirs on the
    suite's PUBLIC_BASE_URL; `helpers.mail_link` moves such links onto the live server.
    """
    settings.PUBLIC_BASE_URL = live_server.url
    return App(url=live_server.url, mailbox=mailbox, workers=live_workers)


# --- Screenshots of failures --------------------------------------------------------------------------------------
def _file_stem(test_name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", test_name).strip("_")


def save_failure_screenshots(item, directory: Path) -> list[Path]:
    """A full-page screenshot of each page the test still has open: `<test name>.png` for its `page`,
    `<test name>-<label>.png` for the others (`-phone`, …)."""
    saved, used = [], set()
    stem = _file_stem(item.name)
    for label, page in item.stash.get(OPEN_PAGES, []):
        if page.is_closed():
            continue
        name = base = stem if label == "page" else f"{stem}-{label}"
        copy = 1
        while name in used:
            copy += 1
            name = f"{base}-{copy}"
        used.add(name)
        path = directory / f"{name}.png"
        directory.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=path, full_page=True)
        except PlaywrightError:  # a crashed page has nothing to show; the test's own failure is what matters
            continue
        saved.append(path)
    return saved


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # The pages are still open here: fixtures are torn down after the call phase's report.
    if report.failed and report.when in ("setup", "call"):
        saved = save_failure_screenshots(item, FAILURES_DIR)
        if saved:
            report.sections.append(("browser", "screenshots: " + ", ".join(str(path) for path in saved)))
    return report
