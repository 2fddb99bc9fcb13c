"""The classic API that existing clients of this design speak: plain-text bodies, HTTP Basic login, Bearer JWTs.

    POST /login              HTTP Basic (email:password)  -> 200, the raw JWT
    POST /upload             Bearer JWT, one multipart file -> 200 "success! fid=<id>"
                             (or a `source_url` form field instead of the file: imported from that URL)
    GET  /download?fid=<id>  Bearer JWT                    -> 200 audio/mpeg

Its bodies and statuses are a contract: `ClassicView.handle_exception` is its one error handler. A personal API key
(`Bearer mp3k_…`) works in place of the JWT; keys are newer than the contract, so a refused one is answered as
everywhere else: 401 with the sentence that says why. So is an `Idempotency-Key` header on `/upload`, as on the native
API (conversions/api/idempotency.py); without one `/upload` answers as it always has.
"""

import base64
import binascii

from django.conf import settings
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError

from accounts.apikeys import is_api_key
from accounts.authentication import RevocableJWTAuthentication, api_key_sign_in
from accounts.selectors import user_authenticate
from accounts.throttling import RETRY_AFTER_ATTRIBUTE, sign_in_wait
from accounts.tokens import AccessToken
from mp3converter.api import as_service_error, error_headers
from mp3converter.errors import InvalidRequest, NotAuthenticated, PermissionDenied

from ..engine import MP3
from ..selectors import conversion_get
from ..services import conversion_create, conversion_create_from_url
from .downloads import IgnoreAcceptHeader, conversion_download
from .idempotency import IDEMPOTENCY_KEY_PARAMETER, form_fingerprint, idempotent
from .native import upload_declared_check
from .serializers import ConversionOptionsInputSerializer, ConversionSourceUrlInputSerializer


class PlainTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):
            data = data.get("detail") or "; ".join(f"{key}: {' '.join(map(str, value))}" for key, value in data.items())
        return str(data or "").encode("utf-8")


def plain(description: str) -> OpenApiResponse:
    """A documented plain-text answer (schema only)."""
    return OpenApiResponse(str, description=description)


BEARER_REFUSED = {
    (401, "text/plain"): plain(
        "missing credentials (no token) | not authorized (CLASSIC_API_STAFF_ONLY) | an API key that is not valid, was "
        "revoked, or whose account is disabled: a sentence that says which"
    ),
    (403, "text/plain"): plain("not authorized: a bad, expired or foreign token, or an inactive or deleted user"),
}


def text(message: str, status_code: int = 200, **headers) -> HttpResponse:
    return HttpResponse(message, status=status_code, content_type="text/plain; charset=utf-8", headers=headers)


class ClassicView(APIView):
    """Plain-text answers for every outcome, including errors raised by DRF or the services."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [PlainTextRenderer]
    content_negotiation_class = IgnoreAcceptHeader

    def handle_exception(self, exc):
        if (error := as_service_error(exc)) is not None:
            headers = error_headers(error)
            if error.status == status.HTTP_401_UNAUTHORIZED:
                headers["WWW-Authenticate"] = 'Basic realm="mp3converter"'
            return text(error.message, error.status, **headers)
        if isinstance(exc, Http404):
            return text("not found", status.HTTP_404_NOT_FOUND)
        if isinstance(exc, exceptions.Throttled):
            wait = f"{exc.wait or 60:.0f}"
            return text(f"too many attempts, try again in {wait} seconds", 429, **{"Retry-After": wait})
        if isinstance(exc, exceptions.ValidationError):
            return text(PlainTextRenderer().render(exc.detail).decode(), status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)

    def bearer_user(self, request):
        """The user behind the Bearer token (a JWT or an API key), with the classic API's exact statuses and bodies."""
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            raise NotAuthenticated("missing credentials")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PermissionDenied("not authorized")
        if is_api_key(token.strip()):
            # Counted against the address's sign-in limit; a refused key raises its own 401, a throttled one 429.
            return self.allowed(api_key_sign_in(request, token.strip()).user)
        authenticator = RevocableJWTAuthentication()  # a token a password change revoked is refused too
        try:
            user = authenticator.get_user(authenticator.get_validated_token(token.strip().encode()))
        except (InvalidToken, AuthenticationFailed, TokenError):
            raise PermissionDenied("not authorized") from None
        return self.allowed(user)

    @staticmethod
    def allowed(user):
        """The user, unless the classic API refuses them: inactive, or not staff under CLASSIC_API_STAFF_ONLY."""
        if not user.is_active:
            raise PermissionDenied("not authorized")
        if settings.CLASSIC_API_STAFF_ONLY and not user.is_staff:
            raise NotAuthenticated("not authorized")
        return user


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        email, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (email, password) if sep and email else None


class ClassicLoginView(ClassicView):
    """Failed sign-ins are counted per account and address, as on every door (accounts/throttling.py)."""

    @extend_schema(
        tags=["classic"],
        summary="Sign in with HTTP Basic; the body is the raw access JWT.",
        request=None,
        responses={
            (200, "text/plain"): str,
            (401, "text/plain"): plain("missing credentials | invalid credentials"),
            (429, "text/plain"): plain("too many attempts, try again in N seconds"),
        },
    )
    def post(self, request):
        credentials = basic_credentials(request.META.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            raise NotAuthenticated("missing credentials")
        if (wait := sign_in_wait(request, credentials[0])) is not None:
            raise exceptions.Throttled(wait=wait)
        user = user_authenticate(request=request, email=credentials[0], password=credentials[1])
        if user is None and (wait := getattr(request._request, RETRY_AFTER_ATTRIBUTE, None)):
            raise exceptions.Throttled(wait=wait)
        if user is None:
            raise NotAuthenticated("invalid credentials")
        return text(str(AccessToken.for_user(user)))


def classic_form_fingerprint(request) -> str:
    # A body that does not parse is an upload with no file here (400 "exactly 1 file required"), with a key or not.
    return form_fingerprint(request, unparsable_as_empty=True)


class ClassicUploadView(ClassicView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        tags=["classic"],
        summary="Upload exactly one file (any field name) to convert, or send a source_url form field to import it.",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        request={"multipart/form-data": {"type": "object", "additionalProperties": {"type": "string", "format": "binary"}}},
        responses={
            (200, "text/plain"): plain("success! fid=<id>"),
            (400, "text/plain"): plain(
                "exactly 1 file required | the submitted file is empty | a bad option | a field that is not an option "
                "| a bad source_url | send either a file or a source_url, not both | a bad Idempotency-Key"
            ),
            **BEARER_REFUSED,
            (403, "text/plain"): plain(
                "not authorized: a bad, expired or foreign token, or an inactive or deleted user | Confirm your email "
                "address first: the account's address is not confirmed yet"
            ),
            (409, "text/plain"): plain("A request with this Idempotency-Key is still being handled."),
            (413, "text/plain"): plain(
                "The file is larger than the MAX_UPLOAD_MB limit, or it would pass the account's storage limit."
            ),
            (415, "text/plain"): plain("Not a video or audio file this service can read."),
            (422, "text/plain"): plain(
                "No audio track, the trim lies outside the file, or split=chapters on a file with no chapters or too "
                "many | the Idempotency-Key came with another request before."
            ),
            (429, "text/plain"): plain(
                "Too many conversions queued or running, or too many uploads in the last hour (see Retry-After) | "
                "too many attempts, try again in N seconds (failed API keys from this address)"
            ),
            (503, "text/plain"): plain("The conversion queue, database or file storage is unavailable; nothing was kept."),
        },
    )
    def post(self, request):
        request.user = self.bearer_user(request)  # an Idempotency-Key is this user's
        return self.upload(request)

    # Refused from the headers alone, before the body is read.
    @idempotent(fingerprint=classic_form_fingerprint, before=upload_declared_check)
    def upload(self, request):
        user = request.user
        try:
            files = [upload for field in request.FILES for upload in request.FILES.getlist(field)]
            data = request.data
        except (exceptions.ParseError, exceptions.UnsupportedMediaType):
            files, data = [], {}
        source_url = ConversionSourceUrlInputSerializer(data=data)
        source_url.is_valid(raise_exception=True)
        if source_url := source_url.validated_data.get("source_url"):
            # Import from a URL instead of a file: the same answer once the job is queued.
            if files:
                raise InvalidRequest("send either a file or a source_url, not both")
            options = ConversionOptionsInputSerializer(data=data, context={"extra_fields": ["source_url"]})
            options.is_valid(raise_exception=True)
            conversion = conversion_create_from_url(
                owner=user, source_url=source_url, options=options.to_options(), webhook_url=options.to_webhook_url()
            )
            return text(f"success! fid={conversion.id}", Location=reverse("conversion-detail", args=[conversion.id]))
        if len(files) != 1:
            raise InvalidRequest("exactly 1 file required")
        if not files[0].size:
            # Like the native API (400): an empty file is a bad request, not media of an unknown kind (415).
            raise InvalidRequest("the submitted file is empty")
        # The file may come under any field name (and an empty source_url may come along); every other field must be
        # an option.
        extra_fields = [*request.FILES, "source_url"]
        options = ConversionOptionsInputSerializer(data=data, context={"extra_fields": extra_fields})
        options.is_valid(raise_exception=True)
        conversion = conversion_create(
            owner=user, upload=files[0], options=options.to_options(), webhook_url=options.to_webhook_url()
        )
        return text(f"success! fid={conversion.id}", Location=reverse("conversion-detail", args=[conversion.id]))


class ClassicDownloadView(ClassicView):
    @extend_schema(
        tags=["classic"],
        summary="Download a finished MP3 by its file id (a ZIP of the tracks with split=chapters).",
        parameters=[OpenApiParameter("fid", str, required=True, description="The id from /upload or the email.")],
        responses={
            (200, MP3.mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The MP3."),
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="With split=chapters: a ZIP of the tracks and an .m3u playlist."
            ),
            (206, MP3.mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            304: OpenApiResponse(description="If-None-Match matched the ETag."),
            (400, "text/plain"): plain("fid is required"),
            **BEARER_REFUSED,
            (404, "text/plain"): plain("not found: no such job, or another user's"),
            (429, "text/plain"): plain("too many attempts, try again in N seconds (failed API keys from this address)"),
            (409, "text/plain"): plain("The MP3 is not ready: the conversion is <status>."),
            (410, "text/plain"): plain("The conversion expired: its files were removed (a sentence says so)."),
            (416, "text/plain"): plain("The Range lies outside the file."),
        },
    )
    def get(self, request):
        user = self.bearer_user(request)
        fid = request.query_params.get("fid", "").strip()
        if not fid:
            raise InvalidRequest("fid is required")
        conversion = conversion_get(user=user, conversion_id=fid)
        if conversion is None:
            raise Http404
        return conversion_download(request, conversion)
