"""mp3converter.prepared: a read compiled once gives what the same queryset gives, on every connection."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from conversions.models import Conversion
from mp3converter.prepared import PreparedRead
from notifications.models import Delivery
from notifications.selectors import notified_at
from tests.factories import ConversionFactory


def own_job_queryset(owner_id, conversion_id):
    return Conversion.objects.filter(owner_id=owner_id, pk=conversion_id).annotate(notified_at=notified_at())[:1]


def own_job() -> PreparedRead:
    return PreparedRead(own_job_queryset, owner_id=Conversion._meta.get_field("owner"),
                        conversion_id=Conversion._meta.pk)


def fields_of(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


@pytest.mark.django_db(transaction=True)
def test_it_gives_what_the_queryset_gives_converted_and_annotated(user):
    job = ConversionFactory(owner=user, status=Conversion.Status.DONE, options={"bitrate": 192, "title": "Ünïcode"},
                            finished_at=timezone.now(), duration_seconds=12.5, attempt=2)
    told = timezone.now() - timedelta(minutes=3)
    Delivery.objects.create(conversion=job, channel="email", attempt=2, state=Delivery.State.DELIVERED,
                            delivered_at=told)
    read = own_job()

    for _ in range(2):  # compiled by the first, reused by the second
        prepared = read.first(owner_id=user.pk, conversion_id=job.pk)
        expected = own_job_queryset(user.pk, job.pk).get()
        assert type(prepared) is Conversion and fields_of(prepared) == fields_of(expected)
        assert prepared.notified_at == expected.notified_at == told
        assert isinstance(prepared.id, uuid.UUID) and prepared.options == {"bitrate": 192, "title": "Ünïcode"}
        assert prepared.finished_at.tzinfo is not None
        assert not prepared._state.adding and prepared._state.db == "default"
        # A real instance: it saves as one.
        prepared.progress = 77
        prepared.save(update_fields=["progress"])
        assert Conversion.objects.get(pk=job.pk).progress == 77


@pytest.mark.django_db
def test_each_key_goes_to_its_place(user, other_user):
    mine, theirs = ConversionFactory(owner=user), ConversionFactory(owner=other_user)
    read = own_job()
    assert read.first(owner_id=user.pk, conversion_id=mine.pk).pk == mine.pk
    assert read.first(owner_id=other_user.pk, conversion_id=theirs.pk).pk == theirs.pk
    assert read.first(owner_id=user.pk, conversion_id=theirs.pk) is None  # the owner is part of the key
    assert read.first(owner_id=other_user.pk, conversion_id=mine.pk) is None
    assert read.first(owner_id=user.pk, conversion_id=uuid.uuid4()) is None


@pytest.mark.django_db
def test_it_compiles_once_and_then_only_runs(user):
    job = ConversionFactory(owner=user)
    read = own_job()
    read.first(owner_id=user.pk, conversion_id=job.pk)
    compiled = read._local.compiled
    with CaptureQueriesContext(connection) as queries:
        read.first(owner_id=user.pk, conversion_id=job.pk)
    assert read._local.compiled is compiled and len(queries) == 1


@pytest.mark.django_db(transaction=True)
def test_each_thread_compiles_for_its_own_connection(user):
    job = ConversionFactory(owner=user)
    read = own_job()
    read.first(owner_id=user.pk, conversion_id=job.pk)
    found = {}

    def in_another_thread():
        try:
            found["job"] = read.first(owner_id=user.pk, conversion_id=job.pk)
            found["connection"] = read._local.compiled.connection
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=in_another_thread)
    thread.start()
    thread.join(timeout=30)
    assert found["job"].pk == job.pk
    assert found["connection"] is not read._local.compiled.connection is connections["default"]


@pytest.mark.django_db
def test_a_value_the_key_cannot_take_raises_as_a_filter_would(user):
    read = PreparedRead(lambda user_id: User.objects.filter(pk=user_id)[:1], user_id=User._meta.pk)
    assert read.first(user_id=user.pk).email == user.email
    assert read.first(user_id=str(user.pk)).pk == user.pk  # as a filter takes it
    with pytest.raises(ValueError):
        read.first(user_id="not-a-number")
    with pytest.raises(ValidationError):
        own_job().first(owner_id=user.pk, conversion_id="not-a-uuid")


@pytest.mark.django_db
def test_what_it_cannot_prepare_is_refused_when_it_first_runs(user):
    not_a_key = PreparedRead(lambda name: User.objects.filter(email=name)[:1], name=User._meta.get_field("email"))
    with pytest.raises(TypeError, match="neither a UUID nor an integer"):
        not_a_key.first(name=user.email)
    unused = PreparedRead(lambda user_id: User.objects.all()[:1], user_id=User._meta.pk)
    with pytest.raises(TypeError, match="not a parameter"):
        unused.first(user_id=user.pk)
    related = PreparedRead(lambda job_id: Conversion.objects.select_related("owner").filter(pk=job_id)[:1],
                           job_id=Conversion._meta.pk)
    with pytest.raises(TypeError, match="select_related"):
        related.first(job_id=uuid.uuid4())
