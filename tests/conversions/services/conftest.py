"""Service test fixtures: uploads as Django's handler makes them, and the storage each test stores in (the tests
that store files run once with the folder storage and once with S3, moto's server; `store`: also with GridFS)."""


import pytest
from django.core.files.storage import FileSystemStorage, default_storage

from conversions import engine
from conversions.models import Conversion
from conversions.services import (
    conversion_create,
)
from conversions.storage import GridFSStorage, S3Storage
from tests.conversions.services.helpers import mp3_files_of, uploaded
from tests.conversions.storage.conftest import gridfs_database_name, make_gridfs_storage  # noqa: F401
from tests.conversions.storage.helpers import MOCK_MONGODB_URI, REAL_MONGODB_URI

Status = Conversion.Status


@pytest.fixture(params=["folder", "s3"])
def storage(request):
    """Where this test's files go: the default folder, or S3 (a fresh key prefix of moto's server)."""
    if request.param == "s3":
        request.getfixturevalue("files_in_s3")
        assert isinstance(default_storage, S3Storage)
    return request.param


@pytest.fixture(params=["folder", "gridfs", "s3"])
def store(request, settings, tmp_path, make_gridfs_storage):  # noqa: F811
    """This test's default storage: a folder of its own, GridFS (mongomock's unless MONGODB_URI is set), or S3 (a
    fresh key prefix of moto's server)."""
    if request.param == "gridfs":
        made = make_gridfs_storage()
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "conversions.storage.GridFSStorage",
                "OPTIONS": {"uri": REAL_MONGODB_URI or MOCK_MONGODB_URI, "database": made._database,
                            "chunk_size_bytes": made.chunk_size_bytes},
            },
        }
        assert isinstance(default_storage, GridFSStorage)
        yield request.param
        # The fixture drops the collections of the storages it made; this one is the settings'.
        default_storage.files_collection.drop()
        default_storage.chunks_collection.drop()
        return
    if request.param == "s3":
        request.getfixturevalue("files_in_s3")
        assert isinstance(default_storage, S3Storage)
    else:
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
        }
        assert isinstance(default_storage, FileSystemStorage)
    yield request.param


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


