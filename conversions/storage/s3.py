"""S3Storage: django-storages' S3 backend (AWS or any S3-compatible server) with the promises GridFSStorage makes.

Reads stream with ranged GETs pinned to the version that was opened (django-storages' own reader downloads the
whole object first), ``ping()`` serves the readiness probe, and there are no public URLs.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from django.utils.deconstruct import deconstructible
from storages.backends import s3 as django_storages_s3
from storages.utils import clean_name

from .base import READ_MODES, ReadOnlyStoredFile

logger = logging.getLogger(__name__)

# The readiness probe must answer within the kubelet's timeout: one attempt, short timeouts.
S3_PING_CONFIG = Config(connect_timeout=3, read_timeout=3, retries={"total_max_attempts": 1})


class S3ObjectReader(io.RawIOBase):
    """
    A stored S3 object read as a seekable stream, with no more than one open GET at a time.

    django-storages' own ``S3File`` downloads the whole object (into memory, by
    default) before the first byte can be read: a multi-GB source in a worker,
    or a whole MP3 for a 100-byte range request. This one asks S3 for
    ``bytes=<position>-`` on the first read after a seek and streams from there.
    ``If-Match`` pins the version whose size was reported.
    """

    def __init__(self, client: Any, *, bucket: str, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._etag = etag
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._position:
            self._close_body()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        if self._body is None:
            response = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-", IfMatch=self._etag
            )
            self._body = response["Body"]
        data = self._body.read(wanted)
        if not data:
            raise OSError(f"S3 object {self._key!r} ended at byte {self._position} of {self._size}")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._close_body()
        super().close()

    def _close_body(self) -> None:
        if self._body is not None:
            body, self._body = self._body, None
            body.close()


class S3ObjectFile(ReadOnlyStoredFile):
    """One stored S3 object opened for reading, with its size and content type from one HEAD request."""

    def __init__(self, storage: S3Storage, key: str, name: str) -> None:
        self._client = storage.connection.meta.client
        self._bucket = storage.bucket_name
        self._key = key
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise FileNotFoundError(f"No S3 object named {key!r}.") from exc
            raise
        self._etag: str = head["ETag"]
        self._object_size = int(head["ContentLength"])
        super().__init__(self._stream(), name=name)
        self.size = self._object_size
        self.mode = "rb"
        self.content_type: str | None = head.get("ContentType")

    def _stream(self) -> S3ObjectReader:
        return S3ObjectReader(
            self._client, bucket=self._bucket, key=self._key, size=self._object_size, etag=self._etag
        )


@deconstructible(path="conversions.storage.S3Storage")
class S3Storage(django_storages_s3.S3Storage):
    """
    django-storages' S3 backend (any S3-compatible server), with streamed reads, a readiness ``ping()`` and no URLs.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an
    instance or pod role); nothing here names them.
    """

    def _open(self, name: str, mode: str = "rb") -> File:
        if mode not in READ_MODES:
            return super()._open(name, mode)  # writing: django-storages' multipart S3File
        key = self._normalize_name(clean_name(name))
        return S3ObjectFile(self, key, name)

    def _get_write_parameters(self, name: str, content: Any = None) -> dict[str, Any]:
        # Content-Type from the stored name, as GridFSStorage does, never from the client's upload header.
        return super()._get_write_parameters(name, None)

    def url(self, name: str | None, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError("files are served by the download view")

    def ping(self) -> bool:
        """Readiness check: True if the bucket exists and these credentials may use it (one HEAD request)."""
        try:
            self._ping_client().head_bucket(Bucket=self.bucket_name)
        except (BotoCoreError, ClientError) as exc:
            # Probes run every few seconds: one line, not a traceback.
            logger.warning("S3 head_bucket on %r failed: %s", self.bucket_name, exc)
            return False
        return True

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_ping_client_instance", None)  # a boto3 client does not pickle
        return state

    def _ping_client(self) -> Any:
        # Built once per storage: a boto3 client is thread-safe, and building one costs more than the probe.
        client = getattr(self, "_ping_client_instance", None)
        if client is None:
            client = self._create_session().client(
                "s3",
                region_name=self.region_name,
                use_ssl=self.use_ssl,
                endpoint_url=self.endpoint_url,
                verify=self.verify,
                config=self.client_config.merge(S3_PING_CONFIG),
            )
            self._ping_client_instance = client
        return client
