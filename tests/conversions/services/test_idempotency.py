"""Idempotency keys' service (conversions/services/idempotency.py) on the real database: one claim per user and key,
the stored answer, another request's 422, the in-progress 409, a dead request's claim taken over, expiry and the sweep.
The HTTP side is tested in tests/conversions/api/test_idempotency.py."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversions.models import IdempotencyKey
from conversions.selectors import idempotency_key_get
from conversions.services import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    StoredAnswer,
    idempotency_answer_store,
    idempotency_claim,
    idempotency_keys_sweep,
    idempotency_release,
)
from conversions.services.idempotency import CLAIM_STALE

pytestmark = [pytest.mark.django_db]

KEY = "7c1f0a52-9b8e-4d1a-a0c3-6e5f4b3a2d10"
ANSWER = StoredAnswer(status_code=202, headers={"Location": "/api/conversions/x/"}, content_type="application/json",
                      body=b'{"id":"x"}')


def test_the_first_request_claims_the_key_and_a_repeat_meanwhile_is_told_it_is_in_use(user):
    claim = idempotency_claim(owner=user, key=KEY, fingerprint="a")
    assert isinstance(claim, IdempotencyKey) and not claim.is_answered
    with pytest.raises(IdempotencyKeyInUse) as in_use:
        idempotency_claim(owner=user, key=KEY, fingerprint="a")
    assert (in_use.value.status, in_use.value.retry_after) == (409, 5)
    # Another request with the key is told so even while the first is at work.
    with pytest.raises(IdempotencyKeyReused) as reused:
        idempotency_claim(owner=user, key=KEY, fingerprint="b")
    assert reused.value.status == 422
    assert IdempotencyKey.objects.count() == 1


def test_a_stored_answer_is_given_to_the_same_request_only(user):
    idempotency_answer_store(claim=idempotency_claim(owner=user, key=KEY, fingerprint="a"), answer=ANSWER)
    assert idempotency_claim(owner=user, key=KEY, fingerprint="a") == ANSWER
    assert idempotency_claim(owner=user, key=KEY, fingerprint="a") == ANSWER
    with pytest.raises(IdempotencyKeyReused):
        idempotency_claim(owner=user, key=KEY, fingerprint="b")
    assert IdempotencyKey.objects.count() == 1


def test_a_released_key_is_free_for_any_request(user):
    idempotency_release(claim=idempotency_claim(owner=user, key=KEY, fingerprint="a"))
    assert not IdempotencyKey.objects.exists()
    assert isinstance(idempotency_claim(owner=user, key=KEY, fingerprint="b"), IdempotencyKey)


def test_keys_are_each_users_own_and_told_apart_exactly(user, other_user):
    idempotency_answer_store(claim=idempotency_claim(owner=user, key=KEY, fingerprint="a"), answer=ANSWER)
    assert isinstance(idempotency_claim(owner=other_user, key=KEY, fingerprint="b"), IdempotencyKey)
    # MySQL's collation would take these for the key above; the unique index is on the key's hash.
    for similar in (KEY.upper(), KEY + " "):
        assert isinstance(idempotency_claim(owner=user, key=similar, fingerprint="c"), IdempotencyKey), similar
    assert idempotency_key_get(user=user, key=KEY).fingerprint == "a"
    assert idempotency_key_get(user=other_user, key=KEY).fingerprint == "b"
    assert idempotency_key_get(user=user, key="never sent") is None


def test_a_claim_whose_request_died_is_taken_over_and_the_dead_request_can_change_nothing(user):
    dead = idempotency_claim(owner=user, key=KEY, fingerprint="a")
    IdempotencyKey.objects.update(claimed_at=timezone.now() - CLAIM_STALE + timedelta(seconds=30))
    with pytest.raises(IdempotencyKeyInUse):  # not stale yet
        idempotency_claim(owner=user, key=KEY, fingerprint="a")
    IdempotencyKey.objects.update(claimed_at=timezone.now() - CLAIM_STALE - timedelta(seconds=1))
    dead.claimed_at = IdempotencyKey.objects.get().claimed_at

    taken = idempotency_claim(owner=user, key=KEY, fingerprint="a")
    assert isinstance(taken, IdempotencyKey) and taken.pk == dead.pk
    # The request that died after all, coming back late, neither answers nor releases the key.
    idempotency_answer_store(claim=dead, answer=StoredAnswer(status_code=202, body=b"late"))
    idempotency_release(claim=dead)
    assert not IdempotencyKey.objects.get().is_answered
    idempotency_answer_store(claim=taken, answer=ANSWER)
    assert idempotency_claim(owner=user, key=KEY, fingerprint="a") == ANSWER


def test_a_key_expires_after_idempotency_key_hours_and_the_sweep_removes_it(user, settings):
    settings.IDEMPOTENCY_KEY_HOURS = 24
    idempotency_answer_store(claim=idempotency_claim(owner=user, key=KEY, fingerprint="a"), answer=ANSWER)
    idempotency_answer_store(claim=idempotency_claim(owner=user, key="fresh", fingerprint="a"), answer=ANSWER)
    day_ago = timezone.now() - timedelta(hours=24, seconds=1)
    IdempotencyKey.objects.filter(key=KEY).update(created_at=day_ago, claimed_at=day_ago)
    assert idempotency_key_get(user=user, key=KEY) is None

    # An expired key the sweep has not removed yet is new again: any request may claim it.
    renewed = idempotency_claim(owner=user, key=KEY, fingerprint="b")
    assert isinstance(renewed, IdempotencyKey) and renewed.created_at > day_ago
    IdempotencyKey.objects.filter(key=KEY).update(created_at=day_ago)

    assert idempotency_keys_sweep() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert idempotency_keys_sweep() == 0


@pytest.mark.django_db(transaction=True)
def test_the_workers_reconciler_runs_sweep_expired_keys(user):
    from mp3converter.celery import reconcile

    idempotency_answer_store(claim=idempotency_claim(owner=user, key=KEY, fingerprint="a"), answer=ANSWER)
    idempotency_answer_store(claim=idempotency_claim(owner=user, key="fresh", fingerprint="a"), answer=ANSWER)
    IdempotencyKey.objects.filter(key=KEY).update(created_at=timezone.now() - timedelta(days=2))
    reconcile()
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
