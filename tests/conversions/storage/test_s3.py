"""What only S3Storage does: ranged reads pinned to one version, private objects, the key prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError
from django.core.files.base import ContentFile

from conversions.storage import S3Storage
from tests.conversions.storage.helpers import MB, get_object_ranges


def test_s3_reads_stream_from_the_position_instead_of_downloading_the_object(s3_storage: S3Storage) -> None:
    data = os.urandom(12 * MB)
    name = s3_storage.save("mp3/long.mp3", ContentFile(data))
    ranges = get_object_ranges(s3_storage)

    with s3_storage.open(name) as stored:
        assert ranges == []  # opening costs a HEAD, no download
        stored.seek(10 * MB)
        assert stored.read(100) == data[10 * MB : 10 * MB + 100]
        assert stored.read(100) == data[10 * MB + 100 : 10 * MB + 200]  # the same response, read on
        stored.seek(0)
        assert stored.read(10) == data[:10]

    assert ranges == [f"bytes {10 * MB}-{len(data) - 1}/{len(data)}", f"bytes 0-{len(data) - 1}/{len(data)}"]


def test_s3_read_fails_rather_than_mix_two_versions_of_an_object(
    s3_storage: S3Storage, s3_server, s3_prefix: str
) -> None:
    name = s3_storage.save("mp3/song.mp3", ContentFile(b"old bytes"))
    stored = s3_storage.open(name)
    # Replaced behind the storage's back (it never overwrites a name itself) after open() saw the old size.
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{s3_prefix}/{name}", Body=b"new and longer bytes")

    with pytest.raises(ClientError) as raised:
        stored.read()

    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"
    stored.close()


def test_s3_stores_objects_without_a_public_acl(s3_storage: S3Storage, s3_server, s3_prefix: str) -> None:
    name = s3_storage.save("mp3/song.mp3", ContentFile(b"ID3"))

    grants = s3_server.client().get_object_acl(Bucket=s3_server.bucket, Key=f"{s3_prefix}/{name}")["Grants"]

    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    assert all(grant["Grantee"]["Type"] == "CanonicalUser" for grant in grants)


def test_s3_keys_carry_the_prefix(s3_storage: S3Storage, s3_server, s3_prefix: str) -> None:
    name = s3_storage.save("sources/clip.mp4", ContentFile(b"x"))

    assert name == "sources/clip.mp4"
    assert s3_server.keys(s3_server.bucket, f"{s3_prefix}/") == [f"{s3_prefix}/sources/clip.mp4"]


def test_s3_ping_fails_for_a_missing_bucket(make_s3_storage: Callable[..., S3Storage]) -> None:
    assert make_s3_storage(bucket_name=f"missing-{uuid.uuid4().hex[:12]}").ping() is False


def test_s3_storage_deconstructs_to_its_own_path() -> None:
    path, args, kwargs = S3Storage(bucket_name="media").deconstruct()

    assert path == "conversions.storage.S3Storage"
    assert kwargs == {"bucket_name": "media"}
