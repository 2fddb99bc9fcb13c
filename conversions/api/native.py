"""The native REST API for conversions. Every view is scoped to the signed-in owner; errors are ServiceErrors,
answered by mp3converter.api.exception_handler."""

from functools import partial

from django.db import transaction
from django.http import Http404, HttpResponseNotModified
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from mp3converter.errors import InvalidRequest, InvalidState

from ..engine import MP3
from ..models import Conversion
from ..selectors import conversion_get, conversion_list
from ..services import (
    conversion_cancel,
    conversion_create,
    conversion_create_from_url,
    conversion_delete,
    conversion_link_create,
    conversion_links_revoke,
    conversion_retry,
    upload_check_declared,
)
from ..zips import ZIP_MAX_CONVERSIONS, conversions_zip
from .conditional import POLLING_CACHE_CONTROL, not_modified, representation_etag
from .downloads import IgnoreAcceptHeader, conversion_download, track_download, zip_download
from .idempotency import IDEMPOTENCY_KEY_PARAMETER, form_fingerprint, idempotent
from .serializers import (
    ConversionCreateInputSerializer,
    ConversionOutputSerializer,
    ConversionZipInputSerializer,
    DownloadLinkOutputSerializer,
)

# Documented error answers (schema only). Errors are `{"code", "detail"}` (mp3converter.api.exception_handler), or
# `{field: [messages]}` for a bad request.
ERROR_BODY = inline_serializer(
    "Error",
    {
        "code": serializers.CharField(required=False, help_text="What went wrong, e.g. unsupported_media."),
        "detail": serializers.CharField(),
    },
)
FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="A bad option, a field that is not one of these, no file, an empty file or more than one, a bad "
    "source_url, or both a file and a source_url: {field: [messages]}.",
)
UNAUTHENTICATED = OpenApiResponse(ERROR_BODY, description="No or bad credentials.")
NOT_FOUND = OpenApiResponse(ERROR_BODY, description="No such conversion, or it is another user's.")
EXPIRED = OpenApiResponse(
    ERROR_BODY,
    description="The conversion expired: its files were removed after the time the service keeps them (code "
    "conversion_expired).",
)
RATE_LIMITED = OpenApiResponse(
    ERROR_BODY,
    description="The account has QUOTA_ACTIVE_JOBS conversions queued, fetching or processing, or made QUOTA_UPLOADS_PER_HOUR "
    "uploads in the last hour (code rate_limited); Retry-After says when to try again.",
)


def get_owned_or_404(request, conversion_id) -> Conversion:
    conversion = conversion_get(user=request.user, conversion_id=conversion_id)
    if conversion is None:
        raise Http404("No conversion with this id.")
    return conversion


def job_data(request, conversion: Conversion) -> dict:
    # A plain dict: the browsable API then builds its forms from the view, not from this output serializer.
    return dict(ConversionOutputSerializer(conversion, context={"request": request}).data)


def job_response(request, conversion: Conversion, status_code: int = status.HTTP_200_OK, **headers) -> Response:
    return Response(job_data(request, conversion), status=status_code, headers=headers)


def upload_declared_check(request) -> None:
    """Refuse an upload from its headers alone, before its body is read (the user is the one DRF or the classic API's
    Bearer check signed in)."""
    upload_check_declared(user=request.user, content_length=request.META.get("CONTENT_LENGTH"))


class ConversionListCreateView(GenericAPIView):
    name = "Conversions"
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ConversionOutputSerializer

    def get_queryset(self):
        return conversion_list(user=self.request.user)

    def get_serializer_class(self):
        # The browsable API's upload form: the file and every option.
        if self.request is not None and self.request.method == "POST":
            return ConversionCreateInputSerializer
        return ConversionOutputSerializer

    @extend_schema(
        responses={
            200: ConversionOutputSerializer(many=True),
            401: UNAUTHENTICATED,
            404: OpenApiResponse(ERROR_BODY, description="No such page."),
        }
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ConversionOutputSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(
        request=ConversionCreateInputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            202: ConversionOutputSerializer,
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED,
            403: OpenApiResponse(
                ERROR_BODY, description="The account's email address is not confirmed yet (code email_not_verified)."
            ),
            409: OpenApiResponse(
                ERROR_BODY,
                description="A request with this Idempotency-Key is still being handled (code idempotency_key_in_use).",
            ),
            413: OpenApiResponse(
                ERROR_BODY,
                description="Larger than MAX_UPLOAD_MB (code file_too_large), or it would pass the account's storage "
                "limit, QUOTA_STORAGE_MB (code quota_exceeded).",
            ),
            415: OpenApiResponse(
                ERROR_BODY,
                description="Not a media file this service can read (code unsupported_media), or a request body that "
                "is not multipart/form-data or a form.",
            ),
            422: OpenApiResponse(
                ERROR_BODY,
                description="The file has no audio stream (code no_audio_stream), the trim lies outside it "
                "(code trim_out_of_range), or split=chapters on a file with no chapters (code no_chapters) or too "
                "many (code too_many_chapters); or the Idempotency-Key came with another request before (code "
                "idempotency_key_reused).",
            ),
            429: RATE_LIMITED,
            503: OpenApiResponse(ERROR_BODY, description="The queue, database or file storage is unavailable; nothing was stored."),
        },
    )
    # Refused from the headers alone before the body is read (token sign-in; a session's CSRF check reads it).
    @idempotent(fingerprint=form_fingerprint, before=upload_declared_check)
    def post(self, request):
        if len(request.FILES.getlist("file")) > 1:
            # Ambiguous: refuse it rather than silently convert one of the files (the last, as QueryDict picks).
            raise InvalidRequest("Send exactly one file.", field="file")
        serializer = ConversionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if source_url := serializer.validated_data.get("source_url"):
            conversion = conversion_create_from_url(
                owner=request.user, source_url=source_url, options=serializer.to_options(),
                webhook_url=serializer.to_webhook_url(),
            )
        else:
            conversion = conversion_create(
                owner=request.user, upload=serializer.validated_data["file"], options=serializer.to_options(),
                webhook_url=serializer.to_webhook_url(),
            )
        location = reverse("conversion-detail", args=[conversion.id])
        return job_response(request, conversion, status.HTTP_202_ACCEPTED, Location=location)


class ConversionDetailView(APIView):
    name = "Conversion"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "If-None-Match", str, OpenApiParameter.HEADER,
                description="The ETag of the last answer: 304 with no body while the job has not changed.",
            )
        ],
        responses={
            200: OpenApiResponse(
                ConversionOutputSerializer,
                description="The job, with an ETag that changes whenever its status, progress or anything shown "
                "changes.",
            ),
            304: OpenApiResponse(description="If-None-Match matched: the job has not changed."),
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
        },
    )
    def get(self, request, conversion_id):
        data = job_data(request, get_owned_or_404(request, conversion_id))
        if request.accepted_renderer.format != "json":
            # The browsable API's page carries forms with a CSRF token: never revalidated from a cached copy.
            return Response(data)
        etag = representation_etag(data)
        headers = {"ETag": etag, "Cache-Control": POLLING_CACHE_CONTROL}
        if not_modified(request, etag):
            return HttpResponseNotModified(headers=headers)
        return Response(data, headers=headers)

    @extend_schema(responses={204: None, 401: UNAUTHENTICATED, 404: NOT_FOUND})
    def delete(self, request, conversion_id):
        conversion_delete(conversion=get_owned_or_404(request, conversion_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversionDownloadView(APIView):
    name = "Download"
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        responses={
            (200, MP3.mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The MP3."),
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="With split=chapters: a ZIP of the tracks (01 - Title.mp3, …) and an .m3u playlist.",
            ),
            (206, MP3.mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            304: OpenApiResponse(description="If-None-Match matched the ETag."),
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR_BODY, description="The conversion is not done yet (code invalid_state)."),
            410: EXPIRED,
            (416, "text/plain"): OpenApiResponse(str, description="The Range lies outside the file."),
        }
    )
    def get(self, request, conversion_id):
        return conversion_download(request, get_owned_or_404(request, conversion_id))


class ConversionTrackDownloadView(APIView):
    name = "Track download"
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        summary="Download one track of a conversion made with split=chapters.",
        responses={
            (200, MP3.mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The track's MP3."),
            (206, MP3.mime_type): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            304: OpenApiResponse(description="If-None-Match matched the ETag."),
            401: UNAUTHENTICATED,
            404: OpenApiResponse(ERROR_BODY, description="No such conversion (or another user's), or no such track."),
            409: OpenApiResponse(ERROR_BODY, description="The conversion is not done yet (code invalid_state)."),
            410: EXPIRED,
            (416, "text/plain"): OpenApiResponse(str, description="The Range lies outside the file."),
        },
    )
    def get(self, request, conversion_id, number):
        return track_download(request, get_owned_or_404(request, conversion_id), number)


class ConversionTransitionView(APIView):
    """POST moves the owner's job along one edge of its state machine; 409 when its state does not allow it."""

    transition = None  # a service: (*, conversion) -> bool
    refused = ""  # the 409 message, formatted with the job's status

    def post(self, request, conversion_id):
        # One transaction: the answer shows the job as the transition left it, read before a retried job is queued
        # (on commit), so never as a worker has already changed it.
        with transaction.atomic():
            moved = self.transition(conversion=get_owned_or_404(request, conversion_id))
            conversion = get_owned_or_404(request, conversion_id)
        if not moved:
            raise InvalidState(self.refused.format(status=conversion.status))
        return job_response(request, conversion, status.HTTP_202_ACCEPTED)


def transition_schema(summary: str, refused: str, more_responses: dict | None = None):
    return extend_schema_view(
        post=extend_schema(
            summary=summary,
            request=None,
            responses={
                202: ConversionOutputSerializer,
                401: UNAUTHENTICATED,
                404: NOT_FOUND,
                409: OpenApiResponse(ERROR_BODY, description=f"{refused} (code invalid_state)"),
                **(more_responses or {}),
            },
        )
    )


@transition_schema("Cancel a queued or running conversion.", "The job is already finished.")
class ConversionCancelView(ConversionTransitionView):
    name = "Cancel"
    transition = staticmethod(conversion_cancel)
    refused = "Only queued, fetching or processing conversions can be cancelled; this one is {status}."


@transition_schema(
    "Queue a failed or cancelled conversion again.", "The job is not failed or cancelled.",
    {
        410: OpenApiResponse(
            ERROR_BODY,
            description="The conversion expired: its uploaded file was removed SOURCE_RETENTION_HOURS after it "
            "ended (code conversion_expired).",
        ),
        429: OpenApiResponse(
            ERROR_BODY,
            description="The account already has QUOTA_ACTIVE_JOBS conversions queued, fetching or processing (code "
            "rate_limited); Retry-After says when to try again.",
        )
    },
)
class ConversionRetryView(ConversionTransitionView):
    name = "Retry"
    # A retried job is active again: the owner's active-jobs limit applies.
    transition = staticmethod(partial(conversion_retry, enforce_limits=True))
    refused = "Only failed or cancelled conversions can be retried; this one is {status}."


class ConversionLinkView(APIView):
    name = "Share link"

    @extend_schema(
        summary="Make a signed link that downloads the MP3 with no sign-in, until it expires (DOWNLOAD_LINK_DAYS).",
        request=None,
        responses={
            201: DownloadLinkOutputSerializer,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR_BODY, description="The conversion is not done (code invalid_state)."),
            410: EXPIRED,
        },
    )
    def post(self, request, conversion_id):
        link = conversion_link_create(conversion=get_owned_or_404(request, conversion_id))
        return Response(DownloadLinkOutputSerializer(link).data, status=status.HTTP_201_CREATED)


class ConversionLinksRevokeView(APIView):
    name = "Revoke links"

    @extend_schema(
        summary="Stop every download link made so far for this conversion; links made afterwards work.",
        request=None,
        responses={204: None, 401: UNAUTHENTICATED, 404: NOT_FOUND},
    )
    def post(self, request, conversion_id):
        conversion_links_revoke(conversion=get_owned_or_404(request, conversion_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversionZipView(APIView):
    """POST the ids of done conversions: one ZIP of their MP3s, streamed."""

    name = "ZIP"
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        summary="Download several MP3s as one ZIP.",
        request=ConversionZipInputSerializer,
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The ZIP (attachment mp3s-<UTC date and time>.zip): each MP3 stored once, under its "
                "download name; a name met twice gets \" (2)\" before its extension.",
            ),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description=f"No ids, more than {ZIP_MAX_CONVERSIONS}, or an id that is not a UUID: "
                '{"ids": [messages]}.',
            ),
            401: UNAUTHENTICATED,
            404: OpenApiResponse(
                ERROR_BODY, description="An id is not one of your conversions (code not_found); the detail names it."
            ),
            409: OpenApiResponse(
                ERROR_BODY, description="A conversion is not done (code invalid_state); the detail names it."
            ),
            410: OpenApiResponse(
                ERROR_BODY, description="A conversion expired (code conversion_expired); the detail names it."
            ),
        },
    )
    def post(self, request):
        serializer = ConversionZipInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        filename, archive = conversions_zip(user=request.user, conversion_ids=serializer.validated_data["ids"])
        return zip_download(filename, archive)
