"""Service test fixtures: uploads as Django's handler makes them, and the storage each test stores in (the tests
that store files run once with the folder storage and once with S3, moto's server)."""


import pytest
from django.core.files.storage import default_storage

from conversions import engine
from conversions.models import Conversion
from conversions.services import (
    conversion_create,
)
from conversions.storage import S3Storage
from tests.conversions.services.helpers import mp3_files_of, uploaded

Status = Conversion.Status


@pytest.fixture(params=["folder", "s3"])
def storage(request):
    """Where this test's files go: the default folder, or S3 (a fresh key prefix of moto's server)."""
    if request.param == "s3":
        request.getfixturevalue("files_in_s3")
        assert isinstance(default_storage, S3Storage)
    return request.param


@pytest.fixture
def queued(storage, user, media):
    """A queued job made by conversion_create (on_commit never fires under `db`, so nothing is published)."""
    made = []

    def make(spec="mp4_aac", **options):
        with uploaded(media(spec)) as upload:
            conversion = conversion_create(owner=user, upload=upload, options=engine.OutputOptions(**options))
        made.append(conversion)
        return conversion

    yield make
    for conversion in made:
        default_storage.delete(conversion.source.name)
        for name in mp3_files_of(conversion.id):
            default_storage.delete(f"mp3/{name}")


