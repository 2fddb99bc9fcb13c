"""The upload handler refuses oversized bodies while they stream, and never keeps a partial temp file."""

import os

import pytest
from django.core.files.uploadhandler import TemporaryFileUploadHandler

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
