"""The browser harness against what the service serves today: the admin's sign-in page in Chromium, axe-core, the
console-error collector and the failure screenshots."""

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from tests.browser import conftest
from tests.browser.helpers import (
    assert_accessible,
    axe,
    browser_errors,
    expect_browser_error,
    flush_events,
    force_sign_in,
    mail_link,
    sign_in,
)
from tests.conversions.api.helpers import upload, wait_finished
from tests.factories import PASSWORD, UserFactory
from tests.fixtures.users import bearer_client
from tests.utils import wait_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def admin(db):
    return UserFactory(is_staff=True, is_superuser=True)


def test_admin_signs_in_through_the_form_with_no_console_errors(app, page, admin):
    response = page.goto(f"{app.url}/admin/login/")
    assert response.status == 200
    assert page.title().startswith("Log in")
    # Its stylesheet came from the live server: the page is styled, not bare HTML.
    assert page.locator("#login-form").evaluate("form => getComputedStyle(form).display") != "none"
    assert page.evaluate("document.styleSheets.length") > 0

    sign_in(page, app.url, admin.email, PASSWORD, path="/admin/login/", button="Log in")

    assert page.url == f"{app.url}/admin/"
    assert page.get_by_role("heading", name="Site administration").is_visible()
    assert browser_errors(page).unexpected() == []  # and the fixture checks again once the test ends


def test_a_wrong_password_keeps_the_form_and_sign_in_says_why(app, page, admin):
    with pytest.raises(AssertionError, match="correct email address and password"):
        sign_in(page, app.url, admin.email, "not-the-password", path="/admin/login/", button="Log in")


def test_a_session_cookie_signs_a_context_in_without_the_form(app, page, admin):
    force_sign_in(page.context, app.url, admin)
    page.goto(f"{app.url}/admin/")
    assert page.url == f"{app.url}/admin/"  # not sent to the login page
    assert admin.email in page.inner_text("#user-tools").lower()  # the admin shows it in capitals


def test_the_phone_page_is_a_phone(app, phone_page):
    phone_page.goto(f"{app.url}/admin/login/")
    assert phone_page.evaluate("[innerWidth, navigator.maxTouchPoints > 0]") == [390, True]


def test_axe_runs_on_the_admin_login_page_and_returns_a_list(app, page):
    page.goto(f"{app.url}/admin/login/")
    violations = axe(page)
    assert isinstance(violations, list)
    assert all({"id", "impact", "help", "nodes"} <= set(violation) for violation in violations)
    assert_accessible(page)


def test_assert_accessible_names_the_rule_and_the_node(page):
    page.set_content('<html lang="en"><title>t</title><main><img src="data:," id="photo"><button></button></main>')
    with pytest.raises(AssertionError) as failure:
        assert_accessible(page)
    message = str(failure.value)
    assert "image-alt (critical)" in message and "#photo" in message
    assert "button-name (critical)" in message


def test_console_and_page_errors_are_collected_and_expected_ones_are_let_through(app, page):
    page.goto(f"{app.url}/admin/login/")
    page.evaluate("console.error('provoked on purpose')")
    page.evaluate("fetch('/no-such-page/')")  # a 404 the page provokes
    page.evaluate("setTimeout(() => { throw new Error('thrown on purpose') })")
    errors = browser_errors(page)

    def three_seen():
        flush_events(page)
        return len(errors.seen) >= 3

    wait_for(three_seen, timeout=10, message="the three provoked errors")
    assert any("provoked on purpose" in error for error in errors.seen), errors.seen
    assert any("status of 404" in error and "/no-such-page/" in error for error in errors.seen), errors.seen
    assert any(error.startswith("page error: Error: thrown on purpose") for error in errors.seen), errors.seen
    assert len(errors.unexpected()) == 3

    expect_browser_error(page, "provoked on purpose")
    expect_browser_error(page, r"status of 404 .*/no-such-page/")
    expect_browser_error(page, "thrown on purpose")
    assert errors.unexpected() == [] and errors.unmet() == []  # so the page fixture lets this test pass

    expect_browser_error(page, "never happens")
    assert errors.unmet() == ["never happens"]  # which would fail the test at teardown
    errors.expected.pop()


@pytest.mark.allow_browser_errors
def test_the_marker_lets_unexpected_errors_through(page):
    page.set_content("<script>console.error('allowed here')</script>")
    flush_events(page)
    assert [error.split(" (at ")[0] for error in browser_errors(page).unexpected()] == ["console error: allowed here"]


class _Item:
    """What the hook reads from a test item: its name and stash."""

    def __init__(self, name):
        self.name = name
        self.stash = pytest.Stash()


def _drive_hook(item, report):
    hook = conftest.pytest_runtest_makereport(item, None)
    next(hook)
    with pytest.raises(StopIteration) as done:
        hook.send(report)
    return done.value.value


@pytest.mark.parametrize("outcome", ["failed", "passed"])
def test_the_failure_hook_saves_a_screenshot_of_each_open_page(new_page, tmp_path, monkeypatch, outcome):
    monkeypatch.setattr(conftest, "FAILURES_DIR", tmp_path)
    page, phone = new_page(), new_page("phone", **conftest.PHONE)
    page.set_content("<h1>desktop</h1>")
    phone.set_content("<h1>phone</h1>")
    item = _Item("test_something[with params]")
    item.stash[conftest.OPEN_PAGES] = [("page", page), ("phone", phone)]
    report = pytest.TestReport("x.py::test_something", ("x.py", 1, "test_something"), {}, outcome, None, "call")

    assert _drive_hook(item, report) is report

    written = sorted(path.name for path in tmp_path.iterdir())
    if outcome == "passed":
        assert written == []
    else:
        assert written == ["test_something_with_params-phone.png", "test_something_with_params.png"]
        assert all(path.read_bytes().startswith(PNG_SIGNATURE) for path in tmp_path.iterdir())
        assert "screenshots:" in dict(report.sections)["browser"]


def test_mail_link_follows_the_verification_email_on_the_live_server(app, page):
    email = "browser-person@example.com"
    registered = APIClient().post("/api/auth/register/", {"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.content

    link = mail_link(app.mailbox, email, "/api/auth/verify/")  # the notify worker sent it; the web process signed it

    assert link.startswith(f"{app.url}/api/auth/verify/?token=")
    response = page.goto(link)
    assert response.status == 200
    assert "confirmed" in page.inner_text("body")
    assert User.objects.get(email=email).email_verified


@pytest.mark.e2e
def test_mail_link_moves_a_link_the_worker_wrote_onto_the_live_server(app, page, media):
    user = UserFactory()
    force_sign_in(page.context, app.url, user)
    client = bearer_client(user)
    job = upload(client, media("mp4_aac"))
    assert job.status_code == 202, job.content
    assert wait_finished(client, job.json()["id"])["status"] == "done"

    link = mail_link(app.mailbox, user.email, "/conversions/")  # the notify worker wrote it on http://testserver

    assert link == f"{app.url}/conversions/{job.json()['id']}/"
    page.goto(link)  # the conversion's page, signed in by the browser's session cookie
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename == "clip.mp3"
