"""Resumable uploads: a tus 1.0 server (https://tus.io/protocols/resumable-upload) at /api/uploads/.

Extensions: creation, creation-with-upload, termination, expiration, checksum (sha1, sha256). The routes:

- OPTIONS /api/uploads/ (and on an upload): what this server supports (Tus-Version, Tus-Extension, Tus-Max-Size,
  Tus-Checksum-Algorithm);
- POST /api/uploads/ with Upload-Length and Upload-Metadata: 201 with Location (plus Upload-Offset when the body
  already carried bytes, `application/offset+octet-stream`);
- HEAD /api/uploads/<id>/: Upload-Offset and Upload-Length; once finished, Conversion-Location and Conversion-Id;
- PATCH /api/uploads/<id>/ with Upload-Offset and the bytes: 204 with the new Upload-Offset (and, on the last byte,
  Conversion-Location and Conversion-Id);
- DELETE /api/uploads/<id>/: 204, the bytes removed.

Why a module of our own rather than drf-tus (2.0.3, the Django tus server): it reads each PATCH whole into memory
(`request.body`) and appends to a local temporary file, so it can neither keep memory bounded nor write to GridFS or
S3; it also brings django-fsm and jsonfield. Here each body is read in 1 MiB pieces and handed to the store
(conversions/storage/resumable.py); the writes are the service's (conversions/services/resumable.py).

Signed in with a JWT or the web session (with the CSRF header, as the page's uploads are). Another user's upload is
404. Errors are answered as elsewhere in the API (`{"code", "detail"}`), always with Tus-Resumable. A creation with an
`Idempotency-Key` sent again gets its first answer, the same upload (conversions/api/idempotency.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

from django.http import Http404
from django.urls import reverse
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from mp3converter.errors import ErrorCode, InvalidRequest, ServiceError

from ..models import ResumableUpload
from ..selectors import resumable_upload_get
from ..services import resumable_upload_append, resumable_upload_create, resumable_upload_delete
from ..uploads import max_upload_bytes
from .idempotency import IDEMPOTENCY_KEY_PARAMETER, fingerprint_of, idempotent
from .native import ERROR_BODY, NOT_FOUND, UNAUTHENTICATED
from .serializers import ConversionOptionsInputSerializer

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
# sha1 because the checksum extension requires it of every server; sha256 for clients that choose better.
CHECKSUM_ALGORITHMS = {"sha1": 20, "sha256": 32}
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
READ_SIZE = 1024 * 1024
# Keys clients (tus-js-client, Uppy) add on their own: accepted and ignored.
IGNORED_METADATA = frozenset({"filetype", "name", "type", "relativePath"})
DEFAULT_FILENAME = "upload"


class UnsupportedVersion(ServiceError):
    code = ErrorCode.UNSUPPORTED_VERSION
    message = f"This server speaks tus {TUS_VERSION}: send the header Tus-Resumable: {TUS_VERSION}."


class UnsupportedContentType(ServiceError):
    code = ErrorCode.UNSUPPORTED_CONTENT_TYPE
    message = f"An upload's bytes are sent with Content-Type: {OFFSET_CONTENT_TYPE}."


def _header_int(request, name: str, *, required: bool = True) -> int | None:
    value = request.headers.get(name)
    if value is None and not required:
        return None
    if value is None or not value.isdigit():
        raise InvalidRequest(f"Send the header {name} as a whole number of bytes.")
    return int(value)


def _checksum(request) -> tuple[str, bytes] | None:
    value = request.headers.get("Upload-Checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidRequest(
            f"Upload-Checksum: {algorithm!r} is not supported; use one of {', '.join(CHECKSUM_ALGORITHMS)}."
        )
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]:
        raise InvalidRequest(f"Upload-Checksum: a {algorithm} digest is {CHECKSUM_ALGORITHMS[algorithm]} bytes, base64-encoded.")
    return algorithm, digest


def _metadata(request) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs (a key alone has an empty value)."""
    metadata: dict[str, str] = {}
    for pair in filter(None, (item.strip() for item in request.headers.get("Upload-Metadata", "").split(","))):
        key, _, encoded = pair.partition(" ")
        try:
            metadata[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest(f"Upload-Metadata: the value of {key!r} is not base64-encoded UTF-8.") from None
    return metadata


def _body(request, size: int) -> Iterator[bytes]:
    """The request's body in pieces of READ_SIZE, never whole. A client that goes away ends it early: what came is
    kept (unless a checksum was sent, which then no longer matches)."""
    remaining = size
    while remaining > 0:
        try:
            piece = request._request.read(min(READ_SIZE, remaining))
        except OSError:  # UnreadablePostError: the connection dropped
            return
        if not piece:
            return
        remaining -= len(piece)
        yield piece


def _content_length(request) -> int:
    value = request.META.get("CONTENT_LENGTH") or "0"
    if not value.isdigit():
        raise InvalidRequest("Content-Length must be a whole number of bytes.")
    return int(value)


def _is_offset_stream(request) -> bool:
    return request.content_type.split(";")[0].strip().lower() == OFFSET_CONTENT_TYPE


def creation_fingerprint(request) -> str:
    """A creation's fingerprint for its Idempotency-Key: the declared length and the metadata (its pairs in any
    order). The bytes a creation-with-upload carries are not read for it: a repeat is answered without them."""
    metadata = sorted(filter(None, (pair.strip() for pair in request.headers.get("Upload-Metadata", "").split(","))))
    return fingerprint_of(request, {
        "Upload-Length": request.headers.get("Upload-Length"),
        "Upload-Defer-Length": request.headers.get("Upload-Defer-Length"),
        "Upload-Metadata": metadata,
    })


def upload_headers(upload: ResumableUpload) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length)}
    if upload.is_complete:
        headers["Conversion-Location"] = reverse("conversion-detail", args=[upload.conversion_id])
        headers["Conversion-Id"] = str(upload.conversion_id)
    else:
        headers["Upload-Expires"] = http_date(upload.expires_at.timestamp())
    return headers


def server_headers() -> dict[str, str]:
    return {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(max_upload_bytes()),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }


TUS_HEADER = OpenApiParameter("Tus-Resumable", str, OpenApiParameter.HEADER, required=True, enum=[TUS_VERSION])
BAD_VERSION = OpenApiResponse(ERROR_BODY, description="Tus-Resumable is missing or not 1.0.0 (code unsupported_version).")


class OffsetStreamParser(BaseParser):
    """Claims tus bodies without reading them: the view streams them itself (`_body`). DRF parses a POST when the
    session's CSRF check looks for a form token; this answers it with nothing, leaving the body unread."""

    media_type = OFFSET_CONTENT_TYPE

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class TusView(APIView):
    """What both tus routes share: the version check, Tus-Resumable on every answer, and OPTIONS."""

    parser_classes = [OffsetStreamParser]

    def get_permissions(self):
        # Discovery needs no sign-in (tus clients and browsers' preflights send none).
        return [] if self.request.method == "OPTIONS" else super().get_permissions()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise UnsupportedVersion()

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = TUS_VERSION
        return response

    @extend_schema(exclude=True)
    def options(self, request, *args, **kwargs):
        return Response(status=status.HTTP_204_NO_CONTENT, headers=server_headers())

    def get_upload(self, request, upload_id) -> ResumableUpload:
        upload = resumable_upload_get(user=request.user, upload_id=upload_id)
        if upload is None:
            raise Http404("No upload with this id.")
        return upload

    def append(self, request, upload: ResumableUpload, offset: int | None = None) -> dict[str, str]:
        """Append the request's body at `offset` (else Upload-Offset's); the headers that tell the client where the
        upload stands."""
        if not _is_offset_stream(request):
            raise UnsupportedContentType()
        size = _content_length(request)
        resumable_upload_append(
            upload=upload, offset=_header_int(request, "Upload-Offset") if offset is None else offset,
            chunks=_body(request, size), declared=size,
            checksum=_checksum(request),
        )
        return upload_headers(upload)


class UploadCreateView(TusView):
    name = "Resumable uploads"

    @extend_schema(
        summary="Start a resumable (tus 1.0) upload; the body may already carry the first bytes.",
        parameters=[
            TUS_HEADER,
            OpenApiParameter("Upload-Length", int, OpenApiParameter.HEADER, required=True),
            OpenApiParameter(
                "Upload-Metadata", str, OpenApiParameter.HEADER,
                description="`filename` and any conversion option, as `key base64(value)` pairs, comma-separated.",
            ),
            IDEMPOTENCY_KEY_PARAMETER,
        ],
        request={OFFSET_CONTENT_TYPE: OpenApiTypes.BINARY},
        responses={
            201: OpenApiResponse(description="Created: Location is the upload's URL."),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="A bad header, metadata key or option."),
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ERROR_BODY, description="The email address is not confirmed (email_not_verified)."),
            409: OpenApiResponse(
                ERROR_BODY, description="A creation with this Idempotency-Key is still being handled "
                "(idempotency_key_in_use).",
            ),
            412: BAD_VERSION,
            413: OpenApiResponse(
                ERROR_BODY,
                description="Upload-Length past MAX_UPLOAD_MB (file_too_large) or the storage limit (quota_exceeded).",
            ),
            422: OpenApiResponse(
                ERROR_BODY, description="The Idempotency-Key came with another request before (idempotency_key_reused).",
            ),
            429: OpenApiResponse(ERROR_BODY, description="An account limit (rate_limited)."),
        },
    )
    @idempotent(fingerprint=creation_fingerprint)
    def post(self, request):
        if "Upload-Defer-Length" in request.headers:
            raise InvalidRequest("Upload-Defer-Length is not supported: send Upload-Length.")
        length = _header_int(request, "Upload-Length")
        metadata = _metadata(request)
        filename = metadata.pop("filename", "") or DEFAULT_FILENAME
        options_fields = set(ConversionOptionsInputSerializer().fields)
        for key in metadata:
            if key not in options_fields and key not in IGNORED_METADATA:
                raise InvalidRequest(f"Upload-Metadata has an unknown key {key!r}.", field=key)
        options = ConversionOptionsInputSerializer(
            data={key: value for key, value in metadata.items() if key in options_fields}
        )
        options.is_valid(raise_exception=True)
        upload = resumable_upload_create(
            owner=request.user, length=length, filename=filename, options=options.to_options(),
            webhook_url=options.to_webhook_url(),
        )
        headers = {"Location": request.build_absolute_uri(reverse("upload-detail", args=[upload.id]))}
        if _content_length(request) > 0:
            headers.update(self.append(request, upload, offset=0))  # creation-with-upload
        headers.update(upload_headers(upload))
        return Response(status=status.HTTP_201_CREATED, headers=headers)


class UploadView(TusView):
    name = "Resumable upload"

    @extend_schema(
        summary="Where an upload stands: Upload-Offset, and once finished its conversion (Conversion-Location).",
        parameters=[TUS_HEADER],
        responses={200: OpenApiResponse(description="No body; see the headers."), 401: UNAUTHENTICATED,
                   404: NOT_FOUND, 412: BAD_VERSION},
    )
    def head(self, request, upload_id):
        headers = upload_headers(self.get_upload(request, upload_id))
        return Response(status=status.HTTP_200_OK, headers={**headers, "Cache-Control": "no-store"})

    @extend_schema(
        summary="Append bytes at Upload-Offset; on the last byte the upload becomes a conversion.",
        parameters=[
            TUS_HEADER,
            OpenApiParameter("Upload-Offset", int, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("Upload-Checksum", str, OpenApiParameter.HEADER, description="`sha256 <base64>`."),
        ],
        request={OFFSET_CONTENT_TYPE: OpenApiTypes.BINARY},
        responses={
            204: OpenApiResponse(description="Appended: Upload-Offset (and Conversion-Location on the last byte)."),
            400: OpenApiResponse(ERROR_BODY, description="A missing or bad header."),
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR_BODY, description="Upload-Offset is not the upload's (offset_mismatch)."),
            410: OpenApiResponse(ERROR_BODY, description="The upload expired or is finished (upload_gone)."),
            412: BAD_VERSION,
            413: OpenApiResponse(
                ERROR_BODY, description="Past TUS_MAX_CHUNK_MB or the declared length (chunk_too_large)."
            ),
            415: OpenApiResponse(ERROR_BODY, description="Not application/offset+octet-stream, or the finished "
                                 "file is not media a POST would take (the POST's answers, 413 to 429, apply)."),
            423: OpenApiResponse(ERROR_BODY, description="Another request is writing it (upload_busy)."),
            460: OpenApiResponse(ERROR_BODY, description="Upload-Checksum does not match (checksum_mismatch)."),
        },
    )
    def patch(self, request, upload_id):
        headers = self.append(request, self.get_upload(request, upload_id))
        return Response(status=status.HTTP_204_NO_CONTENT, headers=headers)

    @extend_schema(
        summary="Terminate an upload: its bytes are removed (a finished upload's conversion stays).",
        parameters=[TUS_HEADER],
        responses={204: None, 401: UNAUTHENTICATED, 404: NOT_FOUND, 412: BAD_VERSION},
    )
    def delete(self, request, upload_id):
        resumable_upload_delete(upload=self.get_upload(request, upload_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
