"""Upload handling: stream every upload to a temporary file and stop as soon as it passes MAX_UPLOAD_MB; hash it on
the way when the request carries an Idempotency-Key."""

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from mp3converter.errors import ErrorCode, ServiceError

# The Idempotency-Key header as WSGI names it (conversions/api/idempotency.py reads the header itself).
IDEMPOTENCY_KEY_META = "HTTP_IDEMPOTENCY_KEY"


class UploadTooLarge(ServiceError):
    """Raised while the body is still streaming, so an oversized upload is never stored whole."""

    code = ErrorCode.FILE_TOO_LARGE
    message = "The file is larger than this service accepts."

    def __init__(self, limit_bytes: int):
        super().__init__(f"The file is larger than the {limit_bytes // (1024 * 1024)} MB limit.")
        self.limit_bytes = limit_bytes


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temp-file handler with a byte limit checked on the declared length and on every chunk.

    A request with an Idempotency-Key needs each file's SHA-256 for its fingerprint: the handler hashes the bytes as
    they stream and sets `sha256` (hex) on the uploaded file, so the file is never read a second time. Requests
    without the header spend nothing on it."""

    digest = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # A declared body past the limit is refused before a single byte is read. The multipart overhead is small
        # next to the limit, so allow one extra MB for it.
        if content_length and content_length > max_upload_bytes() + 1024 * 1024:
            raise UploadTooLarge(max_upload_bytes())
        self.received = 0
        return None

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        keyed = self.request is not None and IDEMPOTENCY_KEY_META in self.request.META
        self.digest = hashlib.sha256() if keyed else None

    def receive_data_chunk(self, raw_data, start):
        self.received = getattr(self, "received", 0) + len(raw_data)
        if self.received > max_upload_bytes():
            self.file.close()  # a NamedTemporaryFile: closing deletes it
            raise UploadTooLarge(max_upload_bytes())
        if self.digest is not None:
            self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        upload = super().file_complete(file_size)
        if self.digest is not None:
            upload.sha256 = self.digest.hexdigest()
        return upload
