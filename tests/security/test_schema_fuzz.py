"""Schema-driven fuzzing with schemathesis: every operation in /api/schema/, called in-process through the WSGI app
(no network), signed in as a real user. Whatever is generated, the answer is never a 5xx, its status code and
content type are ones the schema documents, and its body matches the documented schema.

No operation deletes anything account-like (there is no such endpoint); DELETE /api/conversions/{id}/ only ever
reaches the signed-in user's own test jobs, and DELETE /api/auth/keys/{id}/ only their own keys (the fuzzer signs in
with a JWT, so revoking a key it made locks nothing out). Nothing is queued: under the `db` fixture on_commit callbacks never run.
"""

import zlib

import pytest
import schemathesis
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conversions.models import Conversion
from mp3converter.wsgi import application
from tests.factories import ConversionFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# A resumable upload's chunks (tus): raw bytes, which schemathesis has no serializer for of its own.
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def in_process_db():
    """Keep the test's database connection across requests, as Django's test client does.

    A WSGI request ends with `request_finished` → `close_old_connections`, which closes a connection that is inside
    a transaction (the test's), and every later query of the test would fail.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(user) -> dict:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


@pytest.fixture
def own_jobs(user, media):
    """Two of the user's jobs, a done one with a real MP3 and a failed one, so fuzzed ids also reach real rows."""
    done = ConversionFactory.build(owner=user, original_filename="clip.mp4", status=Conversion.Status.DONE,
                                  options={"title": "clip"}, finished_at=timezone.now(), duration_seconds=2.0)
    done.mp3.save("ignored.mp3", ContentFile(media("mp3").read_bytes()), save=False)
    done.mp3_size = done.mp3.size
    done.save()
    failed = ConversionFactory(
        owner=user, original_filename="clip.mp4", status=Conversion.Status.FAILED, finished_at=timezone.now(),
        error_code="corrupt_media", error_message="The file is damaged.",
    )
    yield [str(done.id), str(failed.id)]
    default_storage.delete(done.mp3.name)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(db, in_process_db, bearer, own_jobs, case):
    if case.path_parameters and "conversion_id" in case.path_parameters:
        # Two ids in three become one of the user's real jobs (picked from the generated value, so deterministic).
        pick = zlib.crc32(str(case.path_parameters["conversion_id"]).encode()) % 3
        if pick < len(own_jobs):
            case.path_parameters["conversion_id"] = own_jobs[pick]
    case.call_and_validate(headers=bearer, checks=CHECKS)
