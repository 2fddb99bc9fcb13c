"""The native REST API for conversions. Every view is scoped to the signed-in owner."""

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from .http import file_download_response
from .models import Conversion
from .selectors import conversion_get, conversion_list
from .serializers import ConversionCreateInputSerializer, ConversionOutputSerializer
from .services import conversion_cancel, conversion_create, conversion_delete, conversion_retry


class NotReady(APIException):
    """The job is not in a state that allows this (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


# Documented error answers (schema only). The API's errors are `{"detail"}`, plus `code` for media errors
# (mp3converter.api.exception_handler), or `{field: [messages]}` for a bad request.
ERROR_BODY = inline_serializer(
    "Error",
    {
        "code": serializers.CharField(required=False, help_text="Set for media errors, e.g. unsupported_media."),
        "detail": serializers.CharField(),
    },
)
FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT, description="A bad option, no file, an empty file or more than one: {field: [messages]}."
)
UNAUTHENTICATED = OpenApiResponse(ERROR_BODY, description="No or bad credentials.")
NOT_FOUND = OpenApiResponse(ERROR_BODY, description="No such conversion, or it is another user's.")


def get_owned_or_404(request, conversion_id) -> Conversion:
    conversion = conversion_get(user=request.user, conversion_id=conversion_id)
    if conversion is None:
        raise Http404("No conversion with this id.")
    return conversion


def mp3_download(request, conversion: Conversion):
    """The finished MP3 as a streamed, range-capable download; 409 while the job is not done."""
    if conversion.status != Conversion.Status.DONE or not conversion.mp3:
        raise NotReady(f"The MP3 is not ready: the conversion is {conversion.status}.")
    return file_download_response(
        request,
        file=conversion.mp3.open("rb"),
        size=conversion.mp3_size,
        etag=f"{conversion.id.hex}-{int(conversion.finished_at.timestamp() * 1000)}",
        filename=conversion.mp3_filename,
    )


class ConversionListCreateView(GenericAPIView):
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ConversionOutputSerializer

    def get_queryset(self):
        return conversion_list(user=self.request.user)

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
        responses={
            202: ConversionOutputSerializer,
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED,
            413: OpenApiResponse(ERROR_BODY, description="Larger than MAX_UPLOAD_MB (code file_too_large)."),
            415: OpenApiResponse(
                ERROR_BODY,
                description="Not a media file this service can read (code unsupported_media), or a request body that "
                "is not multipart/form-data or a form.",
            ),
            422: OpenApiResponse(
                ERROR_BODY,
                description="The file has no audio stream (code no_audio_stream), or the trim lies outside it "
                "(code trim_out_of_range).",
            ),
            503: OpenApiResponse(ERROR_BODY, description="The queue, database or file storage is unavailable; nothing was stored."),
        },
    )
    def post(self, request):
        if len(request.FILES.getlist("file")) > 1:
            # Ambiguous: refuse it rather than silently convert one of the files (the last, as QueryDict picks).
            raise ValidationError({"file": ["Send exactly one file."]})
        serializer = ConversionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversion = conversion_create(
            owner=request.user, upload=serializer.validated_data["file"], options=serializer.to_options()
        )
        headers = {"Location": f"/api/conversions/{conversion.id}/"}
        data = ConversionOutputSerializer(conversion, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers=headers)


class ConversionDetailView(APIView):
    @extend_schema(responses={200: ConversionOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND})
    def get(self, request, conversion_id):
        conversion = get_owned_or_404(request, conversion_id)
        return Response(ConversionOutputSerializer(conversion, context={"request": request}).data)

    @extend_schema(responses={204: None, 401: UNAUTHENTICATED, 404: NOT_FOUND})
    def delete(self, request, conversion_id):
        conversion_delete(conversion=get_owned_or_404(request, conversion_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class IgnoreAcceptHeader(BaseContentNegotiation):
    """A download answers with the file whatever the client's Accept header says; errors fall back to JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ConversionDownloadView(APIView):
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(
        responses={
            (200, "audio/mpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="The MP3."),
            (206, "audio/mpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            304: OpenApiResponse(description="If-None-Match matched the ETag."),
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR_BODY, description="The conversion is not done yet."),
            (416, "text/plain"): OpenApiResponse(str, description="The Range lies outside the file."),
        }
    )
    def get(self, request, conversion_id):
        return mp3_download(request, get_owned_or_404(request, conversion_id))


class ConversionTransitionView(APIView):
    """POST moves the owner's job along one edge of its state machine; 409 when its state does not allow it."""

    transition = None  # a service: (*, conversion) -> bool
    refused = ""  # the 409 message, formatted with the job's status

    def post(self, request, conversion_id):
        conversion = get_owned_or_404(request, conversion_id)
        moved = self.transition(conversion=conversion)
        conversion.refresh_from_db()
        if not moved:
            raise NotReady(self.refused.format(status=conversion.status))
        return Response(ConversionOutputSerializer(conversion, context={"request": request}).data, status=202)


def transition_schema(summary: str, refused: str):
    return extend_schema_view(
        post=extend_schema(
            summary=summary,
            request=None,
            responses={
                202: ConversionOutputSerializer,
                401: UNAUTHENTICATED,
                404: NOT_FOUND,
                409: OpenApiResponse(ERROR_BODY, description=refused),
            },
        )
    )


@transition_schema("Cancel a queued or running conversion.", "The job is already finished.")
class ConversionCancelView(ConversionTransitionView):
    transition = staticmethod(conversion_cancel)
    refused = "Only queued or processing conversions can be cancelled; this one is {status}."


@transition_schema("Queue a failed or cancelled conversion again.", "The job is not failed or cancelled.")
class ConversionRetryView(ConversionTransitionView):
    transition = staticmethod(conversion_retry)
    refused = "Only failed or cancelled conversions can be retried; this one is {status}."
