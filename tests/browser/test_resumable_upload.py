"""The convert page's resumable uploads (tus-js-client, mp3converter/app.js) in a real browser: a file past
TUS_WEB_THRESHOLD_MB goes by tus; its connection drops after the first chunk, the person reloads the page, chooses the
same file again, and the upload goes on from the bytes the server already has, then converts on the real workers."""

from playwright.sync_api import expect

from conversions.models import Conversion, ResumableUpload
from tests.browser.helpers import expect_browser_error, force_sign_in
from tests.factories import UserFactory

DONE_MS = 90_000  # a conversion of a few seconds of media, on a loaded two-core machine
MB = 1024 * 1024
UPLOAD_ROUTE = "**/api/uploads/*/"  # an upload's own URL (HEAD, PATCH), not the creation's POST
TUS_KEYS = "() => Object.keys(localStorage).filter(key => key.startsWith('tus::'))"


def choose_and_convert(page, path) -> None:
    page.locator("input[name=files]").set_input_files(str(path))
    page.get_by_role("button", name="Convert").click()


def is_tus(request) -> bool:
    return "/api/uploads/" in request.url


def test_a_large_file_resumes_after_a_dropped_connection_and_a_reload(app, page, media, settings):
    settings.TUS_WEB_THRESHOLD_MB = 1  # files past 1 MB go by tus ...
    settings.TUS_MAX_CHUNK_MB = 1  # ... in requests of 1 MB
    source = media("wav", duration=15.0)
    size = source.stat().st_size
    assert 2 * MB < size < 3 * MB  # three chunks: one before the reload, two after
    user = UserFactory()
    force_sign_in(page.context, app.url, user)
    page.goto(f"{app.url}/")

    # The connection drops after the first chunk: every later request to the upload fails, and the client retries.
    seen_by_route = []

    def first_chunk_only(route):
        seen_by_route.append(route.request.method)
        if seen_by_route == ["PATCH"]:
            route.continue_()
        else:
            route.abort()

    expect_browser_error(page, r"ERR_FAILED")
    page.route(UPLOAD_ROUTE, first_chunk_only)
    with page.expect_event("requestfailed", predicate=is_tus):
        with page.expect_response(lambda response: response.request.method == "PATCH") as first_chunk:
            choose_and_convert(page, source)
    assert first_chunk.value.status == 204 and first_chunk.value.headers["upload-offset"] == str(MB)
    upload = ResumableUpload.objects.get(owner=user)
    assert (upload.offset, upload.length, upload.completed_at) == (MB, size, None)
    assert len(page.evaluate(TUS_KEYS)) == 1  # the client remembers the upload's URL under the file's fingerprint
    expect(page.locator('#uploads li [data-field="status"]')).to_have_text("Uploading")  # still retrying

    # The person reloads the page (the connection is back) and chooses the same file again.
    page.unroute(UPLOAD_ROUTE)
    page.reload()
    sent = []  # (method, Upload-Offset) of each tus request the page makes from now on
    page.on("request", lambda request: sent.append((request.method, request.headers.get("upload-offset")))
            if is_tus(request) else None)
    choose_and_convert(page, source)
    row = page.locator("#uploads li")
    expect(row.locator('[data-field="status"]')).to_have_text("Done", timeout=DONE_MS)

    # It asked the server where the upload stood and sent only the rest: no new upload, nothing sent twice.
    assert sent == [("HEAD", None), ("PATCH", str(MB)), ("PATCH", str(2 * MB))]
    conversion = Conversion.objects.get(owner=user)
    assert conversion.pk == upload.conversion_id and conversion.source_size == size
    assert conversion.original_filename == source.name
    assert ResumableUpload.objects.get().completed_at is not None
    assert page.evaluate(TUS_KEYS) == []  # a finished upload is forgotten: the same file again is a new conversion
    expect(row.locator('[data-field="download"]')).to_be_visible()
