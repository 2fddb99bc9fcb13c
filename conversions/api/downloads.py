"""Serving converted files as downloads: `conversion_download` for a job (its MP3 by `mp3_download`, or the ZIP of a
split job's tracks), `track_download` for one track, both on `file_download_response`; `zip_download` for a ZIP of
several (conversions/zips.py).

``file_download_response`` turns an already opened binary file-like object
(a Django ``File`` wrapping a GridFS ``GridOut``, a local file, ...) into a
download response that:

* streams the body in fixed-size chunks, so large MP3s never sit in memory;
* always closes the file: when the stream is exhausted, when the response is
  closed before being fully consumed, and for responses that have no body
  (304, 416, HEAD);
* supports ``If-None-Match`` (304), single byte ``Range`` requests (206/416)
  and ``If-Range``, following RFC 9110.

Only one range per request is served. Multi-range requests would need a
``multipart/byteranges`` body; RFC 9110 lets a server ignore ``Range``
instead, so such requests (and malformed ones) get the full 200 response.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header, parse_etags
from rest_framework.negotiation import DefaultContentNegotiation
from zipstream import ZipStream

from mp3converter.errors import ConversionExpired, InvalidState

from ..engine import MP3
from ..models import Conversion
from ..selectors import track_get
from ..zips import tracks_zip

__all__ = [
    "IgnoreAcceptHeader",
    "conversion_download",
    "file_download_response",
    "mp3_download",
    "track_download",
    "zip_download",
]

DEFAULT_CHUNK_SIZE = 64 * 1024

# A single "bytes=first-last" range spec. Either side may be empty
# (``bytes=500-`` or the suffix form ``bytes=-500``); both empty is malformed.
# The range unit is case-insensitive (RFC 9110 section 14.1).
# ASCII digits only (``\d`` would take other scripts' digits too).
_SINGLE_BYTE_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.IGNORECASE | re.ASCII)
# A position past any file: longer digit strings are not converted (Python refuses ints of thousands of digits,
# and a position that large only means "past the end").
_FAR = 10**18
_MAX_DIGITS = 18
# Downloads belong to a user: neither a shared cache nor the browser keeps a copy (ETag and Range still work).
CACHE_CONTROL = "private, no-store"

# Characters allowed inside an entity-tag (etagc in RFC 9110 section 8.8.3):
# visible ASCII except the double quote, plus obs-text.
_ETAGC = re.compile(r"^[\x21\x23-\x7e\x80-\xff]*$")


class _RangeNotSatisfiable(Exception):
    """The Range header is well-formed but no byte of it exists in the file."""


class _FileChunkIterator:
    """Yield ``length`` bytes of ``file`` from ``start`` in bounded chunks.

    A class rather than a generator: ``StreamingHttpResponse`` registers the
    iterable's ``close()`` as a resource closer, and closing a generator that
    was never started does not run its ``finally`` block, which would leak
    the file (e.g. a GridFS cursor) when a client disconnects early.
    """

    def __init__(self, file: IO[bytes], start: int, length: int, chunk_size: int) -> None:
        self._file = file
        self._start = start
        self._remaining = length
        self._chunk_size = chunk_size
        self._started = False
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            if not self._started:
                # Seek lazily so nothing touches the file unless the body is
                # actually sent; always seek because the caller may have
                # read from the file already.
                self._file.seek(self._start)
                self._started = True
            if self._remaining <= 0:
                raise StopIteration
            chunk = self._file.read(min(self._chunk_size, self._remaining))
            if not chunk:
                # The file is shorter than the size we advertised; stop rather
                # than loop forever. The server will see the short body.
                raise StopIteration
            self._remaining -= len(chunk)
            return chunk
        except BaseException:
            # StopIteration included: an exhausted (or failing) stream releases
            # the file immediately instead of waiting for response.close().
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()


def _strong_etag(etag: str) -> str:
    """Quote a raw tag as a strong entity-tag, rejecting unsafe characters."""
    if not _ETAGC.match(etag):
        raise ValueError(f"Invalid ETag value: {etag!r}")
    return f'"{etag}"'


def _opaque_tag(etag: str) -> str:
    """Strip the weak indicator, for weak comparison (RFC 9110 section 8.8.3.2)."""
    return etag[2:] if etag.startswith("W/") else etag


def _if_none_match_matches(header: str, etag: str) -> bool:
    tags = parse_etags(header)
    if tags == ["*"]:
        # "*" matches any current representation, and this one exists.
        return True
    return any(_opaque_tag(tag) == etag for tag in tags)


def _if_range_allows_range(header: str | None, etag: str) -> bool:
    """Whether the Range header may be honoured given If-Range.

    If-Range needs a strong match (RFC 9110 section 13.1.5). An HTTP-date
    validator can never match because we don't send Last-Modified.
    """
    if header is None:
        return True
    return header.strip() == etag


def _position(digits: str) -> int:
    """A byte position from the header's digits, however many there are."""
    digits = digits.lstrip("0") or "0"
    return _FAR if len(digits) > _MAX_DIGITS else int(digits)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Return an inclusive ``(first, last)`` byte range, or ``None`` to ignore.

    Raises ``_RangeNotSatisfiable`` for a valid range outside the file.
    """
    match = _SINGLE_BYTE_RANGE.match(header)
    if match is None:
        # Malformed, other units, or several ranges (comma): ignore the header.
        return None
    first_str, last_str = match.groups()
    if not first_str and not last_str:
        return None
    if not first_str:
        # Suffix range: the last N bytes. A zero-length suffix (or an empty
        # file) selects nothing.
        suffix = _position(last_str)
        if suffix == 0 or size == 0:
            raise _RangeNotSatisfiable
        return max(0, size - suffix), size - 1
    first = _position(first_str)
    if last_str:
        last = _position(last_str)
        if last < first:
            # Syntactically invalid range-spec: treat like a malformed header.
            return None
    else:
        last = size - 1
    if first >= size:
        raise _RangeNotSatisfiable
    return first, min(last, size - 1)


def file_download_response(
    request: HttpRequest,
    *,
    file: IO[bytes],
    size: int,
    etag: str,
    filename: str,
    content_type: str = MP3.mime_type,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> HttpResponseBase:
    """Serve ``file`` (``size`` bytes) as an attachment named ``filename``.

    ``etag`` is the raw tag without quotes (e.g. a content hash); it is sent
    as a strong ETag. The function takes ownership of ``file``: it is closed
    once the response no longer needs it, including when the caller closes
    the response without consuming it.

    Range is honoured only for GET (RFC 9110 section 14.2 defines range
    handling for GET alone); HEAD answers with the headers of the full 200
    response and an empty body. Other methods are served like GET without
    Range or conditional handling; restricting methods is the view's job.
    """
    try:
        if size < 0:
            raise ValueError("size must be >= 0")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        quoted_etag = _strong_etag(etag)
        return _build_response(
            request,
            file=file,
            size=size,
            etag=quoted_etag,
            filename=filename,
            content_type=content_type,
            chunk_size=chunk_size,
        )
    except BaseException:
        # Whatever happens, the caller handed us the file: don't leak it.
        file.close()
        raise


def _build_response(
    request: HttpRequest,
    *,
    file: IO[bytes],
    size: int,
    etag: str,
    filename: str,
    content_type: str,
    chunk_size: int,
) -> HttpResponseBase:
    method = request.method
    is_get_or_head = method in ("GET", "HEAD")

    if_none_match = request.headers.get("If-None-Match")
    if is_get_or_head and if_none_match is not None and _if_none_match_matches(
        if_none_match, etag
    ):
        # The client's copy is current: no body, so release the file now.
        file.close()
        not_modified = HttpResponseNotModified()
        not_modified.headers["ETag"] = etag
        not_modified.headers["Cache-Control"] = CACHE_CONTROL
        return not_modified

    byte_range: tuple[int, int] | None = None
    range_header = request.headers.get("Range")
    if (
        method == "GET"
        and range_header is not None
        and _if_range_allows_range(request.headers.get("If-Range"), etag)
    ):
        try:
            byte_range = _parse_range(range_header, size)
        except _RangeNotSatisfiable:
            file.close()
            unsatisfiable = HttpResponse(
                b"Requested range not satisfiable.\n",
                status=416,
                content_type="text/plain; charset=utf-8",
            )
            unsatisfiable.headers["Content-Range"] = f"bytes */{size}"
            unsatisfiable.headers["Content-Length"] = str(len(unsatisfiable.content))
            unsatisfiable.headers["Accept-Ranges"] = "bytes"
            unsatisfiable.headers["Cache-Control"] = CACHE_CONTROL
            return unsatisfiable

    if byte_range is None:
        start, length, status = 0, size, 200
    else:
        first, last = byte_range
        start, length, status = first, last - first + 1, 206

    response: HttpResponseBase
    if method == "HEAD":
        # Same headers as GET, no body; nothing will read the file.
        file.close()
        response = HttpResponse(b"", status=status, content_type=content_type)
    else:
        response = StreamingHttpResponse(
            _FileChunkIterator(file, start, length, chunk_size),
            status=status,
            content_type=content_type,
        )

    response.headers["Content-Length"] = str(length)
    response.headers["ETag"] = etag
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Content-Disposition"] = content_disposition_header(True, filename)
    response.headers["Cache-Control"] = CACHE_CONTROL
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return response


def _check_not_expired(conversion: Conversion) -> None:
    if conversion.status == Conversion.Status.EXPIRED:
        raise ConversionExpired()


def mp3_download(request: HttpRequest, conversion: Conversion) -> HttpResponseBase:
    """The job's finished MP3 as a streamed, range-capable download; InvalidState (409) while it is not done,
    ConversionExpired (410) once its files were removed."""
    _check_not_expired(conversion)
    if conversion.status != Conversion.Status.DONE or not conversion.mp3:
        raise InvalidState(f"The MP3 is not ready: the conversion is {conversion.status}.")
    return file_download_response(
        request,
        file=conversion.mp3.open("rb"),
        size=conversion.mp3_size,
        etag=f"{conversion.id.hex}-{int(conversion.finished_at.timestamp() * 1000)}",
        filename=conversion.mp3_filename,
        content_type=MP3.mime_type,
    )


def conversion_download(request: HttpRequest, conversion: Conversion) -> HttpResponseBase:
    """What a job's download serves: its MP3, or for a split job (split=chapters) a ZIP of its tracks and an .m3u
    playlist. InvalidState (409) while it is not done, ConversionExpired (410) once its files were removed."""
    _check_not_expired(conversion)
    if conversion.is_split:
        return zip_download(*tracks_zip(conversion=conversion))
    return mp3_download(request, conversion)


def track_download(request: HttpRequest, conversion: Conversion, number) -> HttpResponseBase:
    """One track of a split job, streamed with Range like an MP3. Http404 for a number the job has no track for;
    InvalidState (409) while the job is not done, ConversionExpired (410) once its files were removed."""
    _check_not_expired(conversion)
    if conversion.status != Conversion.Status.DONE:
        raise InvalidState(f"The tracks are not ready: the conversion is {conversion.status}.")
    track = track_get(conversion=conversion, number=number)
    if track is None:
        raise Http404("This conversion has no track with this number.")
    return file_download_response(
        request,
        file=track.mp3.open("rb"),
        size=track.size,
        etag=f"{conversion.id.hex}-{int(conversion.finished_at.timestamp() * 1000)}-{track.number}",
        filename=track.mp3_filename,
        content_type=MP3.mime_type,
    )


def zip_download(filename: str, archive: ZipStream) -> StreamingHttpResponse:
    """A ZIP as an attachment named `filename`, streamed as the archive makes it; sized when the archive knows its
    length. The archive is closed (and with it any file it opened) when the response is, read to the end or not."""
    response = StreamingHttpResponse(archive, content_type="application/zip")
    if archive.sized:
        response.headers["Content-Length"] = str(len(archive))
    response.headers["Content-Disposition"] = content_disposition_header(True, filename)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


class IgnoreAcceptHeader(DefaultContentNegotiation):
    """A download answers with the file whatever the client's Accept header says; errors fall back to the view's
    first renderer. A request body is parsed as usual, by its Content-Type."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
