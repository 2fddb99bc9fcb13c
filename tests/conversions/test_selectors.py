"""conversions.selectors: reads scoped to the owner, and what the job-status poll costs."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from conversions.models import Conversion, Track
from conversions.selectors import conversion_get, conversion_list
from notifications.models import Delivery
from tests.factories import ConversionFactory


@pytest.mark.django_db
def test_the_status_poll_reads_only_what_a_job_can_have(user, django_assert_num_queries):
    running = ConversionFactory(owner=user, status=Conversion.Status.PROCESSING)
    done = ConversionFactory(owner=user, status=Conversion.Status.DONE)
    told = Delivery.objects.create(conversion=done, channel="email", attempt=1, state=Delivery.State.DELIVERED,
                                   delivered_at=timezone.now())
    split = ConversionFactory(owner=user, status=Conversion.Status.DONE, options={"split": "chapters"})
    for number in (2, 1):
        Track.objects.create(conversion=split, number=number, title=f"Part {number}", start_seconds=0,
                             duration_seconds=1, mp3=f"tracks/{split.pk}/{number}.mp3", size=1)

    with django_assert_num_queries(1):  # a running job: its row, nothing more (no delivery, no tracks)
        job = conversion_get(user=user, conversion_id=running.pk)
        assert job.notified_at is None and job.track_list == []
    with django_assert_num_queries(1):  # a finished one: its row, and when its owner was told, in the same query
        job = conversion_get(user=user, conversion_id=done.pk)
        assert job.notified_at == told.delivered_at
        assert job.track_list == []
    with django_assert_num_queries(2):  # a split one: and its tracks, in order
        job = conversion_get(user=user, conversion_id=split.pk)
        assert job.notified_at is None
        assert [track.number for track in job.track_list] == [1, 2] and job.tracks_total == 2


@pytest.mark.django_db
def test_notified_at_is_the_same_one_job_at_a_time_as_in_the_list(user):
    """The poll's read of notified_at agrees with the list's: the first delivery of this attempt."""
    job = ConversionFactory(owner=user, status=Conversion.Status.DONE, attempt=2)
    first, later = timezone.now() - timedelta(minutes=5), timezone.now()
    Delivery.objects.create(conversion=job, channel="email", attempt=1, state=Delivery.State.DELIVERED,
                            delivered_at=first - timedelta(hours=1))  # an earlier attempt's: not this one's
    Delivery.objects.create(conversion=job, channel="webhook", attempt=2, state=Delivery.State.DELIVERED,
                            delivered_at=later)
    Delivery.objects.create(conversion=job, channel="email", attempt=2, state=Delivery.State.DELIVERED,
                            delivered_at=first)
    listed = conversion_list(user=user).get(pk=job.pk)
    assert conversion_get(user=user, conversion_id=job.pk).notified_at == listed.notified_at == first


@pytest.mark.django_db
def test_another_users_job_or_a_bad_id_is_none(user, other_user):
    job = ConversionFactory(owner=other_user)
    assert conversion_get(user=user, conversion_id=job.pk) is None
    assert conversion_get(user=user, conversion_id=uuid.uuid4()) is None
    assert conversion_get(user=user, conversion_id="not-a-uuid") is None
    assert conversion_get(user=other_user, conversion_id=str(job.pk)).pk == job.pk
