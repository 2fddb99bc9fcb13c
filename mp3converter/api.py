"""API-wide error handling: domain exceptions become 4xx/5xx answers with a code and a message people understand."""

from django.db import InterfaceError, OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from conversions.engine import InvalidOption, MediaError, NoAudioStream, TrimOutOfRange
from conversions.services import QueueUnavailable, StorageUnavailable
from conversions.uploads import UploadTooLarge


def error_status(exc: Exception) -> int | None:
    """The HTTP status for a domain exception, or None if it is not one."""
    if isinstance(exc, UploadTooLarge):
        return status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    if isinstance(exc, InvalidOption):
        return status.HTTP_400_BAD_REQUEST
    if isinstance(exc, NoAudioStream | TrimOutOfRange):
        return status.HTTP_422_UNPROCESSABLE_ENTITY
    if isinstance(exc, MediaError):
        return status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    if isinstance(exc, QueueUnavailable | StorageUnavailable | OperationalError | InterfaceError):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    return None


DATABASE_UNAVAILABLE = "The database is unavailable right now. Nothing was stored; please try again shortly."


def error_code(exc: Exception) -> str:
    if isinstance(exc, MediaError):
        return exc.code
    if isinstance(exc, OperationalError | InterfaceError):
        return "database_unavailable"
    codes = {UploadTooLarge: "file_too_large", QueueUnavailable: "queue_unavailable", StorageUnavailable: "storage_unavailable"}
    return codes.get(type(exc), "error")


def error_message(exc: Exception) -> str:
    """What to tell a person: never a driver's error text."""
    return DATABASE_UNAVAILABLE if isinstance(exc, OperationalError | InterfaceError) else str(exc)


def exception_handler(exc, context):
    if isinstance(exc, InvalidOption):
        # Reads like any other field error: {"audio_track": ["This file has 1 audio track: ..."]}.
        return Response({exc.field: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
    code = error_status(exc)
    if code is not None:
        headers = {"Retry-After": "30"} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
        return Response({"code": error_code(exc), "detail": error_message(exc)}, status=code, headers=headers)
    return drf_exception_handler(exc, context)
