"""Tests for conversions.api.downloads.file_download_response."""

from __future__ import annotations

import io
import random
from urllib.parse import unquote

import pytest
from django.core.files.storage import default_storage
from django.http import HttpResponseBase, StreamingHttpResponse
from django.test import RequestFactory
from rest_framework_simplejwt.tokens import AccessToken

from conversions.api.downloads import file_download_response
from tests.factories import DoneConversionFactory

# Closing a response sends Django's request_finished, whose handler looks at any database connection an earlier test
# left open.
pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024
# Random (but reproducible) bytes so an off-by-one offset can't go unnoticed.
PAYLOAD = random.Random(20240601).randbytes(300_000)
SIZE = len(PAYLOAD)
ETAG = "abc123"
QUOTED_ETAG = f'"{ETAG}"'


class RecordingFile(io.BytesIO):
    """BytesIO that records read sizes and rejects unbounded/oversized reads."""

    def __init__(self, data: bytes, max_read: int = CHUNK) -> None:
        super().__init__(data)
        self.max_read = max_read
        self.read_sizes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            raise AssertionError("read() without a size would load the whole file")
        if size > self.max_read:
            raise AssertionError(f"read({size}) exceeds chunk size {self.max_read}")
        self.read_sizes.append(size)
        return super().read(size)


@pytest.fixture
def rf() -> RequestFactory:
    return RequestFactory()


def serve(request, file=None, **kwargs) -> tuple[HttpResponseBase, RecordingFile]:
    f = file if file is not None else RecordingFile(PAYLOAD, kwargs.get("chunk_size", CHUNK))
    options = {"size": len(f.getvalue()), "etag": ETAG, "filename": "song.mp3"}
    options.update(kwargs)
    return file_download_response(request, file=f, **options), f


def body(response: HttpResponseBase) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


# --- full download -----------------------------------------------------------


def test_full_download_streams_whole_file_with_headers(rf):
    response, f = serve(rf.get("/download"))

    assert isinstance(response, StreamingHttpResponse)
    assert response.status_code == 200
    assert body(response) == PAYLOAD
    assert response["Content-Type"] == "audio/mpeg"
    assert response["Content-Length"] == str(SIZE)
    assert response["ETag"] == QUOTED_ETAG
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="song.mp3"'
    assert response["Cache-Control"] == "private, no-store"
    assert "Content-Range" not in response
    assert f.closed


def test_custom_content_type(rf):
    response, _ = serve(rf.get("/"), content_type="audio/ogg")
    assert response["Content-Type"] == "audio/ogg"
    response.close()


def test_seeks_to_start_even_if_file_was_already_read(rf):
    f = RecordingFile(PAYLOAD)
    f.seek(12345)
    response, _ = serve(rf.get("/"), file=f)
    assert body(response) == PAYLOAD


def test_empty_file_full_download(rf):
    response, f = serve(rf.get("/"), file=RecordingFile(b""))
    assert response.status_code == 200
    assert response["Content-Length"] == "0"
    assert body(response) == b""
    assert f.closed


def test_file_shorter_than_advertised_size_does_not_hang(rf):
    response, f = serve(rf.get("/"), file=RecordingFile(b"x" * 10), size=100)
    assert body(response) == b"x" * 10
    assert f.closed


# --- Content-Disposition -------------------------------------------------------


def test_unicode_filename_uses_rfc5987_encoding(rf):
    name = "Ünïcødé 日本.mp3"
    response, _ = serve(rf.get("/"), filename=name)
    header = response["Content-Disposition"]

    assert header == (
        "attachment; filename*=utf-8''"
        "%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E6%97%A5%E6%9C%AC.mp3"
    )
    assert unquote(header.split("''", 1)[1]) == name
    header.encode("ascii")  # Header values must be plain ASCII on the wire.
    response.close()


def test_filename_with_quotes_is_escaped(rf):
    response, _ = serve(rf.get("/"), filename='say "hi" \\ bye.mp3')
    assert response["Content-Disposition"] == 'attachment; filename="say \\"hi\\" \\\\ bye.mp3"'
    response.close()


def test_filename_with_newline_cannot_inject_headers(rf):
    name = 'evil"\r\nX-Injected: 1.mp3'
    response, _ = serve(rf.get("/"), filename=name)
    header = response["Content-Disposition"]

    assert "\r" not in header and "\n" not in header and '"' not in header
    assert header.startswith("attachment; filename*=utf-8''")
    assert unquote(header.split("''", 1)[1]) == name
    assert "X-Injected" not in response
    response.close()


# --- Range ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10-10", 10, 10),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        ("bytes=1000-200000", 1000, 200000),  # spans several chunks
        ("bytes=5-999999999", 5, SIZE - 1),  # last clamped to the file end
        ("bytes=-999999999", 0, SIZE - 1),  # suffix longer than the file
        ("bytes=0-", 0, SIZE - 1),
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE - 1),
        ("Bytes=20-29", 20, 29),  # the range unit is case-insensitive
    ],
)
def test_single_range_returns_partial_content(rf, range_header, first, last):
    response, f = serve(rf.get("/", HTTP_RANGE=range_header))

    assert response.status_code == 206
    assert body(response) == PAYLOAD[first : last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response["Content-Length"] == str(last - first + 1)
    assert response["ETag"] == QUOTED_ETAG
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="song.mp3"'
    assert f.closed


@pytest.mark.parametrize(
    ("payload", "range_header"),
    [
        (PAYLOAD, f"bytes={SIZE}-"),
        (PAYLOAD, f"bytes={SIZE}-{SIZE + 10}"),
        (PAYLOAD, f"bytes={SIZE + 100}-{SIZE + 200}"),
        (PAYLOAD, "bytes=-0"),
        (b"", "bytes=0-"),
        (b"", "bytes=0-0"),
        (b"", "bytes=-5"),
    ],
)
def test_unsatisfiable_range_returns_416(rf, payload, range_header):
    response, f = serve(rf.get("/", HTTP_RANGE=range_header), file=RecordingFile(payload))

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(payload)}"
    assert response["Content-Type"].startswith("text/plain")
    assert 0 < len(response.content) < 100
    assert response["Content-Length"] == str(len(response.content))
    assert f.closed
    assert f.read_sizes == []


@pytest.mark.parametrize(
    "range_header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=abc-def",
        "bytes=1.5-2",
        "bytes=10-5",  # last < first is an invalid range-spec
        "items=0-10",
        "0-10",
        "bytes=0-10,20-30",
        "bytes=0-1, -5",
        "bytes=0-10,",
    ],
)
def test_malformed_or_multi_range_falls_back_to_full_200(rf, range_header):
    response, f = serve(rf.get("/", HTTP_RANGE=range_header))

    assert response.status_code == 200
    assert body(response) == PAYLOAD
    assert response["Content-Length"] == str(SIZE)
    assert "Content-Range" not in response
    assert f.closed


def test_range_ignored_for_non_get_methods(rf):
    response, _ = serve(rf.post("/", HTTP_RANGE="bytes=0-9"))
    assert response.status_code == 200
    assert body(response) == PAYLOAD


# --- If-Range --------------------------------------------------------------------


def test_if_range_matching_etag_honours_range(rf):
    response, _ = serve(rf.get("/", HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=QUOTED_ETAG))
    assert response.status_code == 206
    assert body(response) == PAYLOAD[:10]


@pytest.mark.parametrize(
    "if_range",
    [
        '"stale"',
        f"W/{QUOTED_ETAG}",  # If-Range requires a strong comparison
        ETAG,  # unquoted is not a valid entity-tag
        "Wed, 21 Oct 2015 07:28:00 GMT",  # we send no Last-Modified
    ],
)
def test_if_range_mismatch_ignores_range(rf, if_range):
    response, f = serve(rf.get("/", HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=if_range))

    assert response.status_code == 200
    assert body(response) == PAYLOAD
    assert "Content-Range" not in response
    assert f.closed


def test_if_range_mismatch_with_unsatisfiable_range_sends_full_200(rf):
    response, _ = serve(rf.get("/", HTTP_RANGE=f"bytes={SIZE}-", HTTP_IF_RANGE='"stale"'))
    assert response.status_code == 200
    assert body(response) == PAYLOAD


# --- If-None-Match -----------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    [QUOTED_ETAG, f"W/{QUOTED_ETAG}", "*", f'"other", {QUOTED_ETAG}', f'"x",W/{QUOTED_ETAG}'],
)
def test_if_none_match_returns_304(rf, if_none_match):
    response, f = serve(rf.get("/", HTTP_IF_NONE_MATCH=if_none_match))

    assert response.status_code == 304
    assert response["ETag"] == QUOTED_ETAG
    assert response.content == b""
    assert "Content-Length" not in response
    assert f.closed
    assert f.read_sizes == []


def test_if_none_match_takes_precedence_over_range(rf):
    response, f = serve(rf.get("/", HTTP_IF_NONE_MATCH=QUOTED_ETAG, HTTP_RANGE="bytes=0-9"))
    assert response.status_code == 304
    assert f.closed


def test_if_none_match_on_head_returns_304(rf):
    response, f = serve(rf.head("/", HTTP_IF_NONE_MATCH=QUOTED_ETAG))
    assert response.status_code == 304
    assert f.closed


@pytest.mark.parametrize("if_none_match", ['"other"', ETAG, '"abc"'])
def test_if_none_match_mismatch_sends_full_200(rf, if_none_match):
    response, _ = serve(rf.get("/", HTTP_IF_NONE_MATCH=if_none_match))
    assert response.status_code == 200
    assert body(response) == PAYLOAD


# --- HEAD ---------------------------------------------------------------------------


def test_head_has_same_headers_and_no_body(rf):
    get_response, _ = serve(rf.get("/"))
    head_response, f = serve(rf.head("/"))

    assert head_response.status_code == 200
    assert head_response.content == b""
    assert f.closed
    assert f.read_sizes == []
    for name in (
        "Content-Type",
        "Content-Length",
        "ETag",
        "Accept-Ranges",
        "Content-Disposition",
        "Cache-Control",
    ):
        assert head_response[name] == get_response[name]
    get_response.close()


def test_head_ignores_range(rf):
    # RFC 9110 section 14.2 defines range handling for GET only.
    response, f = serve(rf.head("/", HTTP_RANGE="bytes=0-9"))
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == str(SIZE)
    assert f.closed


# --- closing the file ------------------------------------------------------------------


def test_file_closed_after_stream_is_consumed(rf):
    response, f = serve(rf.get("/"))
    assert not f.closed
    body(response)
    assert f.closed  # closed on exhaustion, before response.close()
    response.close()
    assert f.closed


def test_file_closed_when_unconsumed_response_is_closed(rf):
    response, f = serve(rf.get("/"))
    assert not f.closed
    response.close()
    assert f.closed
    assert f.read_sizes == []


def test_file_closed_when_partially_consumed_response_is_closed(rf):
    response, f = serve(rf.get("/"))
    first = next(iter(response.streaming_content))
    assert first == PAYLOAD[:CHUNK]
    assert not f.closed
    response.close()
    assert f.closed


def test_file_closed_when_partial_content_response_is_closed(rf):
    response, f = serve(rf.get("/", HTTP_RANGE="bytes=100-"))
    response.close()
    assert f.closed


def test_invalid_etag_raises_and_closes_file(rf):
    f = RecordingFile(PAYLOAD)
    with pytest.raises(ValueError):
        file_download_response(rf.get("/"), file=f, size=SIZE, etag='bad"tag', filename="a.mp3")
    assert f.closed


@pytest.mark.parametrize("options", [{"chunk_size": 0}, {"size": -1}])
def test_invalid_arguments_raise_and_close_file(rf, options):
    f = RecordingFile(PAYLOAD)
    kwargs = {"size": SIZE, "etag": ETAG, "filename": "a.mp3", **options}
    with pytest.raises(ValueError):
        file_download_response(rf.get("/"), file=f, **kwargs)
    assert f.closed


# --- chunked streaming -------------------------------------------------------------------


def test_streams_in_bounded_chunks(rf):
    response, f = serve(rf.get("/"))
    chunks = list(response.streaming_content)

    assert b"".join(chunks) == PAYLOAD
    assert len(chunks) == -(-SIZE // CHUNK)  # ceil division: several chunks
    assert all(len(chunk) <= CHUNK for chunk in chunks)
    assert f.read_sizes and all(0 < size <= CHUNK for size in f.read_sizes)


def test_custom_chunk_size_is_respected_for_ranges(rf):
    chunk_size = 1000
    f = RecordingFile(PAYLOAD, max_read=chunk_size)
    response, _ = serve(rf.get("/", HTTP_RANGE="bytes=150-10149"), file=f, chunk_size=chunk_size)
    chunks = list(response.streaming_content)

    assert b"".join(chunks) == PAYLOAD[150:10150]
    assert len(chunks) == 10
    assert all(size <= chunk_size for size in f.read_sizes)
    # Never reads past the end of the requested range.
    assert sum(f.read_sizes) == 10_000


# --- hostile Range headers against a real stored MP3, through both APIs ---------------------------------------
NASTY_RANGES = [
    "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, "bytes=" + "0" * 5000 + "5-9",
    "bytes=-5-10", "bytes=-0", "bytes=5-1", "bytes=0-1,5-9", "bytes=0-1," * 500, "bytes=\u0661-\u0665", "bytes=1e3-",
    "bytes=0x10-", "bytes= - ", "bytes=", "bytes", "=", "", "items=0-1", "bytes=0-1\x00", "\xff\xfe" * 100,
    "bytes=99999999999999999999-99999999999999999999", "bytes=" + "1" * 19 + "-", "BYTES = 0 - 0",
]


@pytest.fixture
def stored_mp3_job(user, media):
    data = media("mp3").read_bytes()
    job = DoneConversionFactory(owner=user, mp3_data=data)
    yield job, data
    default_storage.delete(job.mp3.name)


@pytest.mark.parametrize("surface", ["native", "classic"])
def test_any_range_header_answers_206_200_or_416(api_client, user, stored_mp3_job, surface):
    job, data = stored_mp3_job
    for header in NASTY_RANGES:
        if surface == "native":
            response = api_client.get(f"/api/conversions/{job.id}/download/", HTTP_RANGE=header)
        else:
            response = api_client.get("/download", {"fid": str(job.id)}, HTTP_RANGE=header,
                                      HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        assert response.status_code in (200, 206, 416), (header[:40], response.status_code)
        content = body(response)
        if response.status_code == 200:
            assert content == data
        elif response.status_code == 206:
            first, last = map(int, response["Content-Range"].split()[1].split("/")[0].split("-"))
            assert content == data[first:last + 1]
        assert response["Cache-Control"] == "private, no-store"
