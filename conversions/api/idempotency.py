"""The `Idempotency-Key` header on the three ways an upload starts: `POST /api/conversions/`, the classic `POST /upload`
and a tus creation (`POST /api/uploads/`). The pattern of Stripe's API and of the IETF draft "The Idempotency-Key HTTP
Header Field": a client that did not get an answer (a timeout, a dropped connection) sends the same request with the
same key again and gets the first answer, not a second job. Keys are the user's own; the claims and stored answers
are conversions/services/idempotency.py.

`idempotent(...)` wraps a view's POST. Without the header nothing changes. With it:

1. the key is checked: 1 to 255 printable ASCII characters (400 `invalid_request` otherwise);
2. unless the user sent this key before, the view's checks from the headers alone run first (`before`), so a request
   the account may not make is still refused before its body is read; a repeat skips them: it gets its answer whatever
   the limits say now;
3. the request's fingerprint is taken, which reads the body: the upload handler hashed each file as it streamed
   (conversions/uploads.py);
4. the key is claimed: the stored answer of the same request is sent again (with `Idempotent-Replayed: true`),
   another request with the key is 422, a repeat while the first is at work is 409; otherwise the view runs;
5. a success (2xx) is stored as the key's answer; a refusal releases the key, since it kept nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from contextlib import suppress
from functools import wraps

from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError
from django.http import HttpResponse
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from mp3converter.errors import InvalidRequest

from ..models import IdempotencyKey
from ..selectors import idempotency_key_get
from ..services import (
    StoredAnswer,
    idempotency_answer_store,
    idempotency_claim,
    idempotency_release,
)

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = IdempotencyKey._meta.get_field("key").max_length
PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
# The headers of an answer that a repeat gets again: where the job, or the tus upload, is.
KEPT_HEADERS = ("Location", "Upload-Offset", "Upload-Length", "Upload-Expires", "Conversion-Location", "Conversion-Id")
REPLAYED_HEADER = "Idempotent-Replayed"
# Form fields that say nothing about what is asked: a page's CSRF token changes with every page.
IGNORED_FIELDS = frozenset({"csrfmiddlewaretoken"})

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER,
    description=f"Up to {MAX_KEY_LENGTH} printable ASCII characters, e.g. a UUID. The same request with the same key "
    "within IDEMPOTENCY_KEY_HOURS gets the first answer again (with Idempotent-Replayed: true) instead of a second "
    "job; another request with the key is 422 (idempotency_key_reused), a repeat while the first is still at work "
    "409 (idempotency_key_in_use). Refused requests are not kept: their key can be sent again.",
)


def idempotency_key(request) -> str | None:
    """The request's Idempotency-Key, or None when it sent none."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not PRINTABLE_ASCII.fullmatch(key):
        raise InvalidRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, such as a UUID.")
    return key


def fingerprint_of(request, content) -> str:
    """SHA-256 of the request's method, path and `content` (what it asks for, as JSON)."""
    canonical = json.dumps([request.method, request.path, content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def upload_sha256(upload) -> str:
    """An uploaded file's SHA-256: hashed by the upload handler while it streamed, else read from its file again."""
    if digest := getattr(upload, "sha256", None):
        return digest
    hashed = hashlib.sha256()
    for chunk in upload.chunks():
        hashed.update(chunk)
    upload.seek(0)
    return hashed.hexdigest()


def form_fingerprint(request, *, unparsable_as_empty: bool = False) -> str:
    """A form's fingerprint: every field's values in order, each file by its name, size and SHA-256. A body that does
    not parse raises as the view would, or, with `unparsable_as_empty`, counts as an empty form (as the classic view
    takes it)."""
    try:
        data = request.data
    except (ParseError, UnsupportedMediaType):
        if not unparsable_as_empty:
            raise
        data = {}
    pairs = data.lists() if isinstance(data, MultiValueDict) else ((name, [value]) for name, value in data.items())
    content = {
        name: [
            {"file": value.name, "size": value.size, "sha256": upload_sha256(value)}
            if isinstance(value, UploadedFile) else str(value)
            for value in values
        ]
        for name, values in pairs
        if name not in IGNORED_FIELDS
    }
    return fingerprint_of(request, content)


def answer_of(response) -> StoredAnswer:
    """What a repeat gets of `response`: its status, the headers that say where things are, its body."""
    headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
    if isinstance(response, Response):
        # DRF's, rendered after the view: its data as the JSON renderer writes it (no body: none).
        body = b"" if response.data is None else JSONRenderer().render(response.data)
        content_type = JSONRenderer.media_type if body else ""
    else:
        body, content_type = response.content, response.get("Content-Type", "")
    return StoredAnswer(status_code=response.status_code, headers=headers, content_type=content_type, body=body)


def replay(answer: StoredAnswer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status_code, headers={**answer.headers, REPLAYED_HEADER: "true"})
    if answer.content_type:
        response["Content-Type"] = answer.content_type
    else:
        del response["Content-Type"]  # as DRF sends a body-less answer
    return response


def idempotent(*, fingerprint: Callable[..., str], before: Callable[..., None] | None = None):
    """Make a view's POST idempotent under the Idempotency-Key header (see the module's docstring).
    `fingerprint(request)` tells requests apart; `before(request)` holds the checks that refuse a request from its
    headers alone."""

    def decorate(handler):
        @wraps(handler)
        def post(view, request, *args, **kwargs):
            key = idempotency_key(request)
            if key is None or idempotency_key_get(user=request.user, key=key) is None:
                if before is not None:
                    before(request)
                if key is None:
                    return handler(view, request, *args, **kwargs)
            claim = idempotency_claim(owner=request.user, key=key, fingerprint=fingerprint(request))
            if isinstance(claim, StoredAnswer):
                return replay(claim)
            try:
                response = handler(view, request, *args, **kwargs)
            except BaseException:
                _release(claim)
                raise
            if 200 <= response.status_code < 300:
                _store(claim, answer_of(response))
            else:
                _release(claim)
            return response

        return post

    return decorate


def _store(claim: IdempotencyKey, answer: StoredAnswer) -> None:
    try:
        idempotency_answer_store(claim=claim, answer=answer)
    except DatabaseError as exc:
        # The job is made: its answer goes out all the same. Until the claim goes stale a repeat is told 409.
        logger.warning("idempotency key %s: could not store the answer: %r", claim.pk, exc)


def _release(claim: IdempotencyKey) -> None:
    # The request's own error is the answer: a database that is down now leaves the claim to go stale instead.
    with suppress(DatabaseError):
        idempotency_release(claim=claim)
