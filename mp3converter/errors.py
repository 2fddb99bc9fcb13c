"""The one error model: every refusal and every job failure is a ServiceError with a code, a status and a sentence.

`ErrorCode` is the one list of codes, each with the HTTP status it is answered with. Services and the engine raise
ServiceErrors; nothing below the API turns them into answers. Each surface has one handler that does: JSON for the
native API (`mp3converter/api.py`), plain text for the classic API (`conversions/api/classic.py`). Adding an error is
a subclass (here, or beside the code that raises it), its code here, and a row in the README's error tables;
`tests/test_errors.py` holds the three together.

No Django in here: the conversion engine raises these too.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus


class ErrorCode(StrEnum):
    """Every code a client can be given, in an API answer or as a failed job's `error.code`, with the HTTP status
    it is answered with. (A job's failure is only ever read from the job, so its status is the one it would get.)"""

    def __new__(cls, value: str, status: HTTPStatus | int):
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    # Refused requests
    INVALID_REQUEST = "invalid_request", HTTPStatus.BAD_REQUEST
    INVALID_OPTION = "invalid_option", HTTPStatus.BAD_REQUEST
    NOT_AUTHENTICATED = "not_authenticated", HTTPStatus.UNAUTHORIZED
    PERMISSION_DENIED = "permission_denied", HTTPStatus.FORBIDDEN
    EMAIL_NOT_VERIFIED = "email_not_verified", HTTPStatus.FORBIDDEN
    NOT_FOUND = "not_found", HTTPStatus.NOT_FOUND
    INVALID_STATE = "invalid_state", HTTPStatus.CONFLICT
    # A job whose files were removed after the retention period (conversions/services/retention.py)
    CONVERSION_EXPIRED = "conversion_expired", HTTPStatus.GONE
    FILE_TOO_LARGE = "file_too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    QUOTA_EXCEEDED = "quota_exceeded", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    RATE_LIMITED = "rate_limited", HTTPStatus.TOO_MANY_REQUESTS
    # Signed download links (conversions/services/links.py)
    LINK_INVALID = "link_invalid", HTTPStatus.FORBIDDEN
    LINK_EXPIRED = "link_expired", HTTPStatus.GONE
    LINK_REVOKED = "link_revoked", HTTPStatus.GONE
    LINK_REPLACED = "link_replaced", HTTPStatus.GONE
    LINK_DELETED = "link_deleted", HTTPStatus.GONE
    # Personal API keys (accounts/apikeys.py)
    API_KEY_INVALID = "api_key_invalid", HTTPStatus.UNAUTHORIZED
    API_KEY_REVOKED = "api_key_revoked", HTTPStatus.UNAUTHORIZED
    # Resumable (tus) uploads (conversions/api/tus.py, conversions/services/resumable.py); 460 is tus's own status
    UNSUPPORTED_VERSION = "unsupported_version", HTTPStatus.PRECONDITION_FAILED
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type", HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    OFFSET_MISMATCH = "offset_mismatch", HTTPStatus.CONFLICT
    UPLOAD_BUSY = "upload_busy", HTTPStatus.LOCKED
    UPLOAD_GONE = "upload_gone", HTTPStatus.GONE
    CHUNK_TOO_LARGE = "chunk_too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    CHECKSUM_MISMATCH = "checksum_mismatch", 460
    # Idempotent uploads: the Idempotency-Key header (conversions/services/idempotency.py)
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use", HTTPStatus.CONFLICT
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", HTTPStatus.UNPROCESSABLE_ENTITY
    # The media, at upload or while converting
    UNSUPPORTED_MEDIA = "unsupported_media", HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    NO_AUDIO_STREAM = "no_audio_stream", HTTPStatus.UNPROCESSABLE_ENTITY
    TRIM_OUT_OF_RANGE = "trim_out_of_range", HTTPStatus.UNPROCESSABLE_ENTITY
    NO_CHAPTERS = "no_chapters", HTTPStatus.UNPROCESSABLE_ENTITY
    TOO_MANY_CHAPTERS = "too_many_chapters", HTTPStatus.UNPROCESSABLE_ENTITY
    TOO_LONG = "too_long", HTTPStatus.UNPROCESSABLE_ENTITY
    OUTPUT_TOO_LARGE = "output_too_large", HTTPStatus.UNPROCESSABLE_ENTITY
    CORRUPT_MEDIA = "corrupt_media", HTTPStatus.UNPROCESSABLE_ENTITY
    TIMEOUT = "timeout", HTTPStatus.UNPROCESSABLE_ENTITY
    CANCELLED = "cancelled", HTTPStatus.CONFLICT
    # Importing a source from a URL (conversions/services/fetching.py, mp3converter/outbound.py)
    FETCH_FAILED = "fetch_failed", HTTPStatus.BAD_GATEWAY
    SOURCE_TOO_LARGE = "source_too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    FORBIDDEN_ADDRESS = "forbidden_address", HTTPStatus.FORBIDDEN
    # The service's side
    INTERNAL_ERROR = "internal_error", HTTPStatus.INTERNAL_SERVER_ERROR
    QUEUE_UNAVAILABLE = "queue_unavailable", HTTPStatus.SERVICE_UNAVAILABLE
    DATABASE_UNAVAILABLE = "database_unavailable", HTTPStatus.SERVICE_UNAVAILABLE
    STORAGE_UNAVAILABLE = "storage_unavailable", HTTPStatus.SERVICE_UNAVAILABLE

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").title()


class ServiceError(Exception):
    """An error a client is told about. Subclasses set `code` (which decides the HTTP status) and a default `message`.

    - `message`: a sentence for a person; never a driver's or ffmpeg's words.
    - `field`: the request field it concerns, if one (the native API then answers like a field error).
    - `detail`: for operators only (ffmpeg's output, an exception's repr); stored on a failed job, never shown by
      the API.
    - `retry_after`: seconds after which trying again may work (sent as `Retry-After`).
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    message: str = "Something went wrong on our side. Please try again later."
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, field: str | None = None, detail: str = ""):
        self.message = message or type(self).message
        super().__init__(self.message)
        self.field = field
        self.detail = detail

    @property
    def status(self) -> HTTPStatus:
        return self.code.status

    def field_errors(self) -> dict[str, list[str]]:
        """{field: [sentences]} when the error concerns request fields (the native API answers with that)."""
        return {self.field: [self.message]} if self.field else {}


class InvalidRequest(ServiceError):
    code = ErrorCode.INVALID_REQUEST
    message = "This request is missing something or has something it should not."


class NotAuthenticated(ServiceError):
    code = ErrorCode.NOT_AUTHENTICATED
    message = "Sign in first: this needs valid credentials."


class PermissionDenied(ServiceError):
    code = ErrorCode.PERMISSION_DENIED
    message = "You are not allowed to do this."


class EmailNotVerified(ServiceError):
    code = ErrorCode.EMAIL_NOT_VERIFIED
    message = "Confirm your email address first: follow the link in the email we sent you."


class NotFound(ServiceError):
    """No such job for this user: another user's job is answered the same, so its existence is never revealed."""

    code = ErrorCode.NOT_FOUND
    message = "There is no conversion with this id."


class QuotaExceeded(ServiceError):
    """A per-user limit on stored bytes (413)."""

    code = ErrorCode.QUOTA_EXCEEDED
    message = "This would pass your storage limit. Delete some conversions and try again."


class RateLimited(ServiceError):
    """A per-user limit on how much at once or how often (429, with Retry-After)."""

    code = ErrorCode.RATE_LIMITED
    message = "You have reached a limit on your account. Please try again later."

    def __init__(self, message: str | None = None, *, retry_after: int = 60, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InvalidState(ServiceError):
    """The job's state does not allow this (download before it is done, cancel after it finished, …)."""

    code = ErrorCode.INVALID_STATE
    message = "The conversion's state does not allow this."


class ConversionExpired(ServiceError):
    """The job's files were removed once the service had kept them as long as it keeps files (its row stays, with
    status `expired`): nothing can be downloaded, shared or retried any more."""

    code = ErrorCode.CONVERSION_EXPIRED
    message = (
        "This conversion has expired: its files were removed after the time this service keeps them. Upload the "
        "video again to convert it anew."
    )


class InternalError(ServiceError):
    """A problem on the service's side: storage unreachable after retries, a stored file missing, a bug."""

    message = "The conversion failed because of a problem on our side. Please try again later."


class ServiceUnavailable(ServiceError):
    """Something the service needs is down; nothing was kept, so the same request can simply be sent again."""

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
