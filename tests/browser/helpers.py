"""What browser tests do in a page: check accessibility with axe-core, sign in (through the form, or by a session
cookie), follow a link from a caught email, and the console errors each page collects."""

from __future__ import annotations

import html
import os
import re
import weakref
from dataclasses import dataclass, field
from email.message import Message
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from playwright.sync_api import Error as PlaywrightError

AXE_SCRIPT = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")


# --- Accessibility ------------------------------------------------------------------------------------------------
def axe(page, *, options: dict | None = None) -> list[dict]:
    """Run axe-core on the page as it is now; the violations, as axe reports them (id, impact, help, nodes, …).

    The script is evaluated over the DevTools protocol rather than added as a <script> tag, so a page's
    Content-Security-Policy (which would rightly refuse an inline script) does not stop the check.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT.read_text())
    results = page.evaluate("async (options) => await window.axe.run(document, options)", options or {})
    return results["violations"]


def describe_violations(violations: list[dict]) -> str:
    """One block per violation: the rule, its impact and help, and each offending node with what to fix."""
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} — {violation['helpUrl']}")
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    {target}: {summary}")
    return "\n".join(lines)


def assert_accessible(page, *, impacts: tuple[str, ...] = BLOCKING_IMPACTS, options: dict | None = None) -> list[dict]:
    """Fail if axe finds a violation of one of these impacts (serious or critical by default); return the others."""
    violations = axe(page, options=options)
    blocking = [violation for violation in violations if violation["impact"] in impacts]
    assert not blocking, (
        f"{len(blocking)} {' or '.join(impacts)} accessibility violation(s) on {page.url}:\n"
        f"{describe_violations(blocking)}"
    )
    return violations


# --- Signing in ---------------------------------------------------------------------------------------------------
def sign_in(page, live_url: str, email: str, password: str, *, path: str = "/account/login/",
            button: str = "Sign in") -> None:
    """Sign in through the form at `path`, as a person does: the fields labelled Email and Password, then `button`.

    Fails, quoting the page's error messages, when the browser is still on the form afterwards.
    """
    page.goto(f"{str(live_url).rstrip('/')}{path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()
    if urlsplit(page.url).path == path:
        said = page.locator(".errornote, .errorlist, [role=alert]").all_inner_texts()
        raise AssertionError(f"signing in as {email} failed; the page says: {said or page.inner_text('body')[:500]}")


def force_sign_in(context, live_server, user) -> None:
    """Give a browser context a signed-in session for `user` without the form: a session made in the database the
    live server reads, carried by the session cookie, exactly as Django's `login()` would leave it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    context.add_cookies([{
        "name": settings.SESSION_COOKIE_NAME,
        "value": session.session_key,
        "url": str(live_server),
        "httpOnly": settings.SESSION_COOKIE_HTTPONLY,
        "secure": settings.SESSION_COOKIE_SECURE,  # the browser treats the loopback address as a secure origin
        "sameSite": settings.SESSION_COOKIE_SAMESITE or "Lax",
    }])


# --- Links in caught mail -----------------------------------------------------------------------------------------
LINK = re.compile(r"https?://[^\s<>\"']+")


def _texts(message: Message) -> list[str]:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            texts.append(html.unescape(payload.decode(part.get_content_charset() or "utf-8", errors="replace")))
    return texts


def mail_links(message: Message) -> list[str]:
    """Every http(s) link in a message's text and HTML parts, in order."""
    return [link.rstrip(".,;:!?)") for text in _texts(message) for link in LINK.findall(text)]


def mail_link(mailbox, to: str, path_prefix: str, *, timeout: float = 30) -> str:
    """The newest link whose path starts with `path_prefix` in the mail caught for `to` (waiting for it to arrive),
    on the live server.

    A link is built on PUBLIC_BASE_URL by whichever process writes it. The web process (e.g. the signed verification
    link) reads the in-process setting, which the `app` fixture points at the live server. The notify worker (e.g.
    the download link of a finished job) reads the one it was started with: the suite's workers serve every test of
    the session, so that stays the suite's `http://testserver`, and such a link is moved onto the live server here.
    A link on any other base fails: it would be wrong in a real mail too.
    """
    from django.conf import settings

    from tests.utils import wait_for

    def relative(link: str) -> str:
        parts = urlsplit(link)
        return urlunsplit(("", "", parts.path, parts.query, parts.fragment))

    def newest():
        for message in reversed(mailbox.to(to)):
            for link in reversed(mail_links(message)):
                if relative(link).startswith(path_prefix):
                    return link
        return None

    link = wait_for(newest, timeout=timeout, message=f"an email to {to} with a link to {path_prefix}")
    live_base = settings.PUBLIC_BASE_URL.rstrip("/")
    workers_base = os.environ["PUBLIC_BASE_URL"].rstrip("/")
    for base in (live_base, workers_base):
        if link.startswith(f"{base}/"):
            return f"{live_base}{link[len(base):]}"
    raise AssertionError(f"{link} is on neither the live server ({live_base}) nor the workers' base ({workers_base})")


# --- Console and page errors --------------------------------------------------------------------------------------
# Chromium asks every origin for /favicon.ico by itself when a page names no icon: that 404 is the browser's guess,
# not an error of the page. An icon at any other address that fails to load is still an error.
BROWSER_NOISE = (
    re.compile(r"^console error: Failed to load resource: .*status of 404 .*\(at https?://[^/]+/favicon\.ico:"),
)


@dataclass
class BrowserErrors:
    """The console errors and uncaught page errors of one page, and the ones the test said it expects."""

    seen: list[str] = field(default_factory=list)
    expected: list[re.Pattern] = field(default_factory=list)

    def on_console(self, message) -> None:
        if message.type == "error":
            where = message.location or {}
            at = f"{where.get('url', '?')}:{where.get('lineNumber', '?')}"
            self.seen.append(f"console error: {message.text} (at {at})")

    def on_page_error(self, error) -> None:
        self.seen.append(f"page error: {error.name}: {error.message}")

    def expect(self, pattern: str) -> None:
        """An error matching `pattern` (a regular expression, searched) is expected: it must happen, and it does not
        fail the test."""
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        allowed = (*self.expected, *BROWSER_NOISE)
        return [error for error in self.seen if not any(pattern.search(error) for pattern in allowed)]

    def unmet(self) -> list[str]:
        return [pattern.pattern for pattern in self.expected if not any(pattern.search(error) for error in self.seen)]


_ERRORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watch_errors(page) -> BrowserErrors:
    """Start collecting the page's console errors and uncaught exceptions (the page fixtures do this for every page)."""
    errors = BrowserErrors()
    page.on("console", errors.on_console)
    page.on("pageerror", errors.on_page_error)
    _ERRORS[page] = errors
    return errors


def browser_errors(page) -> BrowserErrors:
    return _ERRORS[page]


def expect_browser_error(page, pattern: str) -> None:
    """Say a test provokes an error on purpose, e.g. `expect_browser_error(page, r"status of 404")` for a missing
    resource: the error must then happen, and it does not fail the test."""
    browser_errors(page).expect(pattern)


def flush_events(page) -> None:
    """One round trip to the page, so every event the browser sent before it has reached the collectors."""
    if not page.is_closed():
        try:
            page.evaluate("0")
        except PlaywrightError:  # a crashed or navigating page: what it sent so far is already collected
            pass
