"""conversions.selectors: reads scoped to the owner, and what the job-status poll costs."""

import uuid

import pytest

from conversions.models import Track
from conversions.selectors import conversion_get
from tests.factories import ConversionFactory


@pytest.mark.django_db
def test_a_job_is_one_query_and_its_tracks_are_read_only_for_a_split_job(user, django_assert_num_queries):
    plain = ConversionFactory(owner=user)
    split = ConversionFactory(owner=user, options={"split": "chapters"})
    for number in (1, 2):
        Track.objects.create(conversion=split, number=number, title=f"Part {number}", start_seconds=0,
                             duration_seconds=1, mp3=f"tracks/{split.pk}/{number}.mp3", size=1)

    with django_assert_num_queries(1):  # the status poll of an ordinary job: its row and notified_at, nothing more
        job = conversion_get(user=user, conversion_id=plain.pk)
        assert list(job.tracks.all()) == []
        assert job.notified_at is None
    with django_assert_num_queries(2):
        job = conversion_get(user=user, conversion_id=split.pk)
        assert [track.number for track in job.tracks.all()] == [1, 2]
        assert job.tracks_total == 2


@pytest.mark.django_db
def test_another_users_job_or_a_bad_id_is_none(user, other_user):
    job = ConversionFactory(owner=other_user)
    assert conversion_get(user=user, conversion_id=job.pk) is None
    assert conversion_get(user=user, conversion_id=uuid.uuid4()) is None
    assert conversion_get(user=user, conversion_id="not-a-uuid") is None
    assert conversion_get(user=other_user, conversion_id=str(job.pk)).pk == job.pk
