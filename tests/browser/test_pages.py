"""The web app in a real browser (Debian's Chromium through Playwright) against the live server, the real workers, the
SMTP catcher, MariaDB and RabbitMQ: what a person does, from signing up to playing and downloading the MP3."""

import base64
import re
import zipfile

import pytest
from playwright.sync_api import Error as PlaywrightError, expect

from accounts.models import User
from accounts.services import api_key_create
from conversions.models import Conversion
from tests.browser.helpers import assert_accessible, expect_browser_error, force_sign_in, mail_link, sign_in
from tests.conversions.api.helpers import upload, wait_finished
from tests.factories import PASSWORD, ConversionFactory, DoneConversionFactory, UserFactory
from tests.fixtures.users import bearer_client
from tests.media.inspect import probe_output

DONE_MS = 90_000  # a conversion of a few seconds of media, on a loaded two-core machine
NEW_PASSWORD = "another-long-passphrase-77"


def signed_in_page(page, app, user=None):
    user = user or UserFactory()
    force_sign_in(page.context, app.url, user)
    return user


def drop(page, paths, target: str = "#dropzone") -> None:
    """A real drop event on `target`, carrying the files in a DataTransfer, as a person dragging them does."""
    files = [{"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()} for path in paths]
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const file of files) {
                const bytes = Uint8Array.from(atob(file.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], file.name));
            }
            return transfer;
        }""",
        files,
    )
    page.dispatch_event(target, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


def is_mp3(path) -> bool:
    probed = probe_output(path)
    return probed["format"] == "mp3" and [stream["codec"] for stream in probed["audio"]] == ["mp3"]


def goto_download(page, url: str, tmp_path, name: str):
    """Open a URL that answers an attachment; the browser saves it. Returns the saved file's path."""
    with page.expect_download() as download:
        try:
            page.goto(url)
        except PlaywrightError as error:  # navigating to an attachment ends in a download, which goto reports
            if "Download is starting" not in str(error):
                raise
    target = tmp_path / name
    download.value.save_as(target)
    return target


# --- account ---------------------------------------------------------------------------------------------------------
def test_sign_up_confirm_from_the_mail_and_sign_in(app, page):
    page.goto(f"{app.url}/account/signup/")
    assert_accessible(page)
    page.get_by_label("Email").fill("new.listener@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    page.goto(mail_link(app.mailbox, "new.listener@example.com", "/api/auth/verify/"))
    expect(page.get_by_role("heading", name="Email address confirmed")).to_be_visible()
    assert User.objects.get(email="new.listener@example.com").email_verified

    sign_in(page, app.url, "new.listener@example.com", PASSWORD)
    expect(page.get_by_role("heading", name="Convert videos to MP3")).to_be_visible()
    assert_accessible(page)


def test_password_reset_by_email_end_to_end(app, page):
    user = UserFactory(email="forgetful.listener@example.com")
    page.goto(f"{app.url}/account/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    assert_accessible(page)
    page.get_by_label("Email").fill(user.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    page.goto(mail_link(app.mailbox, user.email, "/account/password/reset/"))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()
    sign_in(page, app.url, user.email, NEW_PASSWORD)
    expect(page.get_by_role("heading", name="Convert videos to MP3")).to_be_visible()


# --- convert, watch, play, download ------------------------------------------------------------------------------------
def test_two_dropped_files_upload_and_finish_without_a_reload_then_play_and_download(app, page, media, tmp_path):
    user = signed_in_page(page, app)
    page.goto(f"{app.url}/")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.evaluate("window.stillThisPage = true")

    drop(page, [media("mp4_aac", duration=3.0), media("wav", duration=2.0)])
    rows = page.locator("#uploads li")
    expect(rows).to_have_count(2)
    for row, name in zip(rows.all(), ("clip.mp4", "tone.wav")):
        expect(row.locator(".name")).to_have_text(name)
        expect(row.locator('[data-field="status"]')).to_have_text("Done", timeout=DONE_MS)
        expect(row.locator('[data-field="bytes"]')).to_contain_text("sent")
        expect(row.get_by_role("link", name="Download")).to_be_visible()
    assert navigations == [] and page.evaluate("window.stillThisPage") is True  # no reload, no navigation
    jobs = list(Conversion.objects.filter(owner=user).order_by("original_filename"))
    assert [job.status for job in jobs] == ["done", "done"]
    assert all(job.options.get("vbr_quality") == 2 for job in jobs)  # the default preset

    # The conversion's page plays the MP3: the player loads it and reports its duration, and it plays.
    rows.first.get_by_role("link", name="Details").click()
    audio = page.locator("audio")
    expect(audio).to_be_visible()
    # Predicates as functions: Playwright would evaluate a bare expression with eval, which the page's CSP refuses.
    page.wait_for_function("() => document.querySelector('audio').duration > 0")
    assert abs(audio.evaluate("a => a.duration") - 3.0) < 0.5
    audio.click()  # a person's gesture, so the browser lets it play
    audio.evaluate("a => a.play()")
    page.wait_for_function("() => document.querySelector('audio').currentTime > 0")
    assert_accessible(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert download.value.suggested_filename == "clip.mp3" and is_mp3(saved)

    # Both, as one ZIP, from the list.
    page.goto(f"{app.url}/conversions/")
    assert_accessible(page)
    for checkbox in page.get_by_role("checkbox").all():
        checkbox.check()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download selected as one ZIP").click()
    archive_path = tmp_path / "both.zip"
    download.value.save_as(archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        assert sorted(archive.namelist()) == ["clip.mp3", "tone.mp3"]
        archive.extractall(tmp_path / "unzipped")
    assert all(is_mp3(tmp_path / "unzipped" / name) for name in ("clip.mp3", "tone.mp3"))


def test_a_refused_file_says_why_next_to_its_name(app, page, media):
    signed_in_page(page, app)
    page.goto(f"{app.url}/")
    expect_browser_error(page, r"status of 415")  # the browser logs the refused upload; the page says why
    drop(page, [media("text")], target="h1")  # anywhere on the page, not only on the box
    row = page.locator("#uploads li")
    expect(row.locator(".name")).to_have_text("notes.txt")
    expect(row.get_by_role("alert")).to_contain_text("not a video or audio file")
    expect(row.locator('[data-field="status"]')).to_have_text("Not converted")


def test_upload_with_the_keyboard_only(app, page, media):
    user = signed_in_page(page, app)
    # Playwright switches file-chooser interception on, without waiting, when the first listener is added: add one now,
    # and let a round trip pass, so the key press below cannot beat it and open the native dialog instead.
    page.on("filechooser", lambda chooser: None)
    page.goto(f"{app.url}/")

    def tab_to(check: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(check):
                return
        raise AssertionError(f"Tab never reached the element ({check})")

    tab_to("document.activeElement.id === 'id_files'")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(media("wav")))
    tab_to("document.activeElement.name === 'preset'")  # the presets are one group: arrows choose within it
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.id") == "id_preset_3"  # the Voice preset, by keyboard
    tab_to("document.activeElement.textContent.trim() === 'Convert'")
    page.keyboard.press("Enter")
    expect(page.locator("#uploads li").locator('[data-field="status"]')).to_have_text("Done", timeout=DONE_MS)
    [job] = Conversion.objects.filter(owner=user)
    assert job.options["bitrate_kbps"] == 64 and job.options["channels"] == 1 and job.options["normalize"] is True


# --- the email's link ------------------------------------------------------------------------------------------------
def test_the_emails_link_opens_signed_out_and_stops_once_revoked(app, page, new_page, media, tmp_path):
    user = UserFactory()
    client = bearer_client(user)
    job_id = upload(client, media("mp4_aac")).json()["id"]
    assert wait_finished(client, job_id)["status"] == "done"
    link = mail_link(app.mailbox, user.email, "/links/")

    stranger = new_page("stranger")  # a fresh context: no session, no cookie
    saved = goto_download(stranger, link, tmp_path, "from-the-mail.mp3")
    assert is_mp3(saved)

    signed_in_page(page, app, user)
    page.goto(f"{app.url}/conversions/{job_id}/")
    page.get_by_role("button", name="Revoke all links").click()
    expect(page.get_by_text("Every link made for this conversion so far has stopped working.")).to_be_visible()

    expect_browser_error(stranger, r"status of 410")
    refused = stranger.goto(link)
    assert refused.status == 410
    expect(stranger.get_by_role("heading")).to_contain_text("withdrawn")
    assert_accessible(stranger)


# --- the browsable API -------------------------------------------------------------------------------------------------
def test_the_browsable_api_signs_in_and_uploads_through_its_form(app, page, media):
    user = UserFactory()
    expect_browser_error(page, r"status of 40[13]")  # the first visit, signed out
    page.goto(f"{app.url}/api/conversions/")
    page.get_by_role("link", name="Log in").click()
    page.locator("#id_username").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/api/conversions/$"))

    form = page.locator("form[enctype='multipart/form-data']").filter(has=page.locator("input[name=file]"))
    form.locator("input[name=file]").set_input_files(str(media("mp4_aac")))
    form.locator("[name=bitrate_kbps]").fill("128")
    form.get_by_role("button", name="POST").click()
    expect(page.get_by_text("HTTP 202 Accepted")).to_be_visible()
    [job] = Conversion.objects.filter(owner=user)
    assert job.options["bitrate_kbps"] == 128
    assert wait_finished(bearer_client(user), job.id)["status"] == "done"


# --- every page: CSP, no console errors, accessible, on a desktop and a phone -------------------------------------------
@pytest.fixture
def person(db, media):
    user = UserFactory(email="sam@example.com")
    done = DoneConversionFactory(owner=user, original_filename="holiday.mp4", mp3_data=media("mp3").read_bytes())
    failed = ConversionFactory(owner=user, status="failed", error_code="corrupt_media",
                               error_message="The file is damaged: its audio could not be decoded.")
    api_key_create(user=user, name="home server backup script")  # the account page lists it
    yield user, done, failed
    done.mp3.storage.delete(done.mp3.name)


SIGNED_OUT = ["/", "/account/login/", "/account/signup/", "/account/password/reset/"]
SIGNED_IN = ["/", "/conversions/", "/conversions/{done}/", "/conversions/{failed}/", "/account/", "/account/password/"]


@pytest.mark.parametrize("device", ["page", "phone_page"])
def test_every_page_runs_under_the_csp_without_errors_and_is_accessible(app, person, device, request):
    user, done, failed = person
    page = request.getfixturevalue(device)
    for path in SIGNED_OUT:
        response = page.goto(f"{app.url}{path}")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, path
        assert response.headers["x-frame-options"] == "DENY"
        assert_accessible(page)
    force_sign_in(page.context, app.url, user)
    for path in SIGNED_IN:
        response = page.goto(f"{app.url}{path.format(done=done.id, failed=failed.id)}")
        assert response.status == 200, path
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
        assert_accessible(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], f"{path} scrolls sideways: {width}px"
