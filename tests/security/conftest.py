"""Fixtures the hostile-input suites share."""

from pathlib import Path

import pytest


@pytest.fixture
def upload_tmp(settings, tmp_path) -> Path:
    """Uploads stream to a temp dir of this test's own, so the test can see what they leave there."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder
