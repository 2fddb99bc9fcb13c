"""mp3converter.serializers: fields built once give DRF's own answer, with each serializer's own request."""

from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone
from rest_framework import serializers

from conversions.api.serializers import ConversionOutputSerializer
from conversions.models import Conversion, Track
from conversions.selectors import conversion_get, conversion_list
from notifications.models import Delivery
from tests.factories import ConversionFactory


def request_from(host: str):
    return RequestFactory().get("/api/conversions/", HTTP_HOST=host)


def drf_answer(instance, context) -> dict:
    """What DRF's own ModelSerializer makes of it: every field copied and bound for this serializer."""
    return serializers.ModelSerializer.to_representation(ConversionOutputSerializer(context=context), instance)


@pytest.fixture
def jobs(user):
    queued = ConversionFactory(owner=user, source_url="https://media.example/talk.mp4")
    done = ConversionFactory(owner=user, status=Conversion.Status.DONE, mp3_size=123, duration_seconds=61.5,
                             options={"bitrate": 192}, started_at=timezone.now() - timedelta(seconds=9),
                             finished_at=timezone.now())
    Delivery.objects.create(conversion=done, channel="email", attempt=1, state=Delivery.State.DELIVERED,
                            delivered_at=timezone.now())
    failed = ConversionFactory(owner=user, status=Conversion.Status.FAILED, error_code="no_audio_stream",
                               error_message="The file has no audio.", finished_at=timezone.now())
    split = ConversionFactory(owner=user, status=Conversion.Status.DONE, options={"split": "chapters"},
                              finished_at=timezone.now())
    for number in (1, 2):
        Track.objects.create(conversion=split, number=number, title=f"Part {number}", start_seconds=number * 60.0,
                             duration_seconds=60.0, mp3=f"tracks/{split.pk}/{number}.mp3", size=1000 + number)
    return [queued, done, failed, split]


@pytest.mark.django_db
def test_the_answer_is_drfs_own_for_every_kind_of_job(user, jobs):
    context = {"request": request_from("127.0.0.1:8000")}
    for job in jobs:
        job = conversion_get(user=user, conversion_id=job.pk)
        answer = ConversionOutputSerializer(job, context=context).data
        assert answer == drf_answer(job, context)
        assert list(answer) == list(drf_answer(job, context))  # in the same order
    split = conversion_get(user=user, conversion_id=jobs[-1].pk)
    tracks = ConversionOutputSerializer(split, context=context).data["tracks"]
    assert [track["number"] for track in tracks] == [1, 2]
    assert tracks[1]["download_url"].startswith("http://127.0.0.1:8000/api/conversions/")
    done = ConversionOutputSerializer(conversion_get(user=user, conversion_id=jobs[1].pk), context=context).data
    assert done["notified_at"] is not None and done["download_url"].endswith("/download/")
    assert ConversionOutputSerializer(jobs[2], context=context).data["error"] == {
        "code": "no_audio_stream", "message": "The file has no audio."}


@pytest.mark.django_db
def test_a_list_is_each_jobs_own_answer(user, jobs):
    context = {"request": request_from("localhost")}
    listed = list(conversion_list(user=user))
    assert ConversionOutputSerializer(listed, many=True, context=context).data == [
        drf_answer(job, context) for job in listed
    ]


@pytest.mark.django_db
def test_each_serializer_answers_with_its_own_request(user, jobs, settings):
    """The fields are shared; the request is not: URLs are built from each serializer's own."""
    settings.ALLOWED_HOSTS = ["one.example", "two.example"]
    split = conversion_get(user=user, conversion_id=jobs[-1].pk)
    first = ConversionOutputSerializer(split, context={"request": request_from("one.example")})
    second = ConversionOutputSerializer(split, context={"request": request_from("two.example")})
    assert second.data["download_url"].startswith("http://two.example/")
    assert first.data["download_url"].startswith("http://one.example/")
    assert all(track["download_url"].startswith("http://one.example/") for track in first.data["tracks"])
