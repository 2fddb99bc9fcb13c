"""The upload handler refuses oversized bodies while they stream, never keeps a partial temp file, and hashes the files
of a request with an Idempotency-Key as they stream."""

import hashlib
import os

import pytest
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import RequestFactory

from conversions.uploads import LimitedTemporaryFileUploadHandler, UploadTooLarge


@pytest.fixture
def one_mb_limit(settings):
    settings.MAX_UPLOAD_MB = 1


def start_file(handler):
    handler.new_file("file", "clip.mp4", "video/mp4", None)


def test_declared_length_over_the_limit_is_refused_before_reading(one_mb_limit):
    handler = LimitedTemporaryFileUploadHandler()
    with pytest.raises(UploadTooLarge, match="1 MB limit"):
        handler.handle_raw_input(None, {}, 3 * 1024 * 1024, b"boundary")


def test_body_without_a_declared_length_is_cut_off_while_streaming(one_mb_limit):
    handler = LimitedTemporaryFileUploadHandler()
    handler.handle_raw_input(None, {}, None, b"boundary")  # e.g. chunked transfer encoding
    start_file(handler)
    chunk = b"x" * (256 * 1024)
    for offset in range(0, 1024 * 1024, len(chunk)):
        handler.receive_data_chunk(chunk, offset)
    temp_path = handler.file.temporary_file_path()
    assert os.path.exists(temp_path)
    with pytest.raises(UploadTooLarge):
        handler.receive_data_chunk(chunk, 1024 * 1024)
    assert not os.path.exists(temp_path)  # the partial upload is gone at once


def test_upload_within_the_limit_is_written_to_a_temporary_file(one_mb_limit):
    handler = LimitedTemporaryFileUploadHandler()
    handler.handle_raw_input(None, {}, 600 * 1024, b"boundary")
    start_file(handler)
    handler.receive_data_chunk(b"y" * (500 * 1024), 0)
    upload = handler.file_complete(500 * 1024)
    assert isinstance(handler, TemporaryFileUploadHandler)
    assert upload.size == 500 * 1024
    with open(upload.temporary_file_path(), "rb") as written:
        assert written.read() == b"y" * (500 * 1024)
    upload.close()


@pytest.mark.parametrize("keyed", [True, False])
def test_each_file_of_a_request_with_an_idempotency_key_is_hashed_as_it_streams(keyed):
    headers = {"HTTP_IDEMPOTENCY_KEY": "k"} if keyed else {}
    handler = LimitedTemporaryFileUploadHandler(RequestFactory().post("/api/conversions/", **headers))
    handler.handle_raw_input(None, {}, None, b"boundary")
    uploads = []
    for content in (b"first" * 1000, b"second"):
        start_file(handler)
        for offset in range(0, len(content), 1024):
            handler.receive_data_chunk(content[offset : offset + 1024], offset)
        uploads.append(handler.file_complete(len(content)))
    if keyed:
        assert [upload.sha256 for upload in uploads] == [
            hashlib.sha256(b"first" * 1000).hexdigest(), hashlib.sha256(b"second").hexdigest()
        ]
    else:
        assert not any(hasattr(upload, "sha256") for upload in uploads)  # nothing spent on it
    for upload in uploads:
        upload.close()
