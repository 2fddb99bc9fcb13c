"""The one error model: every refusal and every job failure is a ServiceError with a code, a status and a sentence.

Services and the engine raise these; nothing below the API turns them into answers. Each surface has one handler
that does: JSON for the native API (`mp3converter/api.py`), plain text for the classic API
(`conversions/api/classic.py`). Adding an error is a subclass (here, or beside the code that raises it) and a row in
the README's error tables; `tests/test_errors.py` holds the subclasses, `ErrorCode` and the README together.

No Django in here: the conversion engine raises these too.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus


class ErrorCode(StrEnum):
    """Every code a client can be given, in an API answer or as a failed job's `error.code`."""

    # Refused requests
    INVALID_REQUEST = "invalid_request"
    INVALID_OPTION = "invalid_option"
    NOT_AUTHENTICATED = "not_authenticated"
    PERMISSION_DENIED = "permission_denied"
    INVALID_STATE = "invalid_state"
    FILE_TOO_LARGE = "file_too_large"
    # The media, at upload or while converting
    UNSUPPORTED_MEDIA = "unsupported_media"
    NO_AUDIO_STREAM = "no_audio_stream"
    TRIM_OUT_OF_RANGE = "trim_out_of_range"
    CORRUPT_MEDIA = "corrupt_media"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # The service's side
    INTERNAL_ERROR = "internal_error"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").title()


class ServiceError(Exception):
    """An error a client is told about. Subclasses set `code`, `status` and a default `message`.

    - `message`: a sentence for a person; never a driver's or ffmpeg's words.
    - `field`: the request field it concerns, if one (the native API then answers like a field error).
    - `detail`: for operators only (ffmpeg's output, an exception's repr); stored on a failed job, never shown by
      the API.
    - `retry_after`: seconds after which trying again may work (sent as `Retry-After`).
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    message: str = "Something went wrong on our side. Please try again later."
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, field: str | None = None, detail: str = ""):
        self.message = message or type(self).message
        super().__init__(self.message)
        self.field = field
        self.detail = detail


class InvalidRequest(ServiceError):
    code = ErrorCode.INVALID_REQUEST
    status = HTTPStatus.BAD_REQUEST
    message = "This request is missing something or has something it should not."


class NotAuthenticated(ServiceError):
    code = ErrorCode.NOT_AUTHENTICATED
    status = HTTPStatus.UNAUTHORIZED
    message = "Sign in first: this needs valid credentials."


class PermissionDenied(ServiceError):
    code = ErrorCode.PERMISSION_DENIED
    status = HTTPStatus.FORBIDDEN
    message = "You are not allowed to do this."


class InvalidState(ServiceError):
    """The job's state does not allow this (download before it is done, cancel after it finished, …)."""

    code = ErrorCode.INVALID_STATE
    status = HTTPStatus.CONFLICT
    message = "The conversion's state does not allow this."


class InternalError(ServiceError):
    """A problem on the service's side: storage unreachable after retries, a stored file missing, a bug."""

    message = "The conversion failed because of a problem on our side. Please try again later."


class ServiceUnavailable(ServiceError):
    """Something the service needs is down; nothing was kept, so the same request can simply be sent again."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    retry_after = 30


class QueueUnavailable(ServiceUnavailable):
    code = ErrorCode.QUEUE_UNAVAILABLE
    message = "The conversion queue is unavailable right now. Please try again shortly."


class DatabaseUnavailable(ServiceUnavailable):
    code = ErrorCode.DATABASE_UNAVAILABLE
    message = "The database is unavailable right now. Nothing was stored; please try again shortly."


class StorageUnavailable(ServiceUnavailable):
    code = ErrorCode.STORAGE_UNAVAILABLE
    message = "File storage is unavailable right now. Nothing was stored; please try again shortly."
