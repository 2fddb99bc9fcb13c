"""Personal API keys below the API: the key's format and hash (accounts/apikeys.py), the services that make, revoke
and touch a key, and the selectors that list, get and authenticate one."""

import hashlib
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.apikeys import (
    ACCOUNT_DISABLED,
    PREFIX,
    ApiKeyInvalid,
    ApiKeyRevoked,
    is_api_key,
    key_make,
    key_parse,
    secret_matches,
)
from accounts.models import ApiKey
from accounts.selectors import api_key_authenticate, api_key_get, api_key_list
from accounts.services import LAST_USED_GRANULARITY, api_key_create, api_key_revoke, api_key_touch
from tests.factories import UserFactory


# --- the format ----------------------------------------------------------------------------------------------------
def test_a_made_key_parses_back_into_its_lookup_and_a_secret_that_matches_its_hash():
    made = key_make()
    assert made.key.startswith(PREFIX) and is_api_key(made.key)
    lookup, secret = key_parse(made.key)
    assert lookup == made.lookup and len(lookup) == 12
    assert made.key == f"{PREFIX}{lookup}_{secret}"
    assert made.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in made.secret_hash and secret_matches(secret, made.secret_hash)
    assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), made.secret_hash)


def test_keys_are_random():
    keys = [key_make() for _ in range(50)]
    assert len({made.key for made in keys}) == len({made.lookup for made in keys}) == 50


def test_a_secret_holding_underscores_still_parses():
    lookup, secret = "0123456789ab", "_" * 10 + "x" * 33
    assert key_parse(f"{PREFIX}{lookup}_{secret}") == (lookup, secret)


@pytest.mark.parametrize("text", [
    "", "mp3k_", "eyJhbGciOiJIUzI1NiJ9.e30.x",  # empty, the prefix alone, a JWT
    f"{PREFIX}0123456789ab_{'x' * 42}",  # the secret cut short
    f"{PREFIX}0123456789ab_{'x' * 44}",  # one character too many
    f"{PREFIX}0123456789AB_{'x' * 43}",  # the lookup is lower-case hex
    f"{PREFIX}0123456789a_x{'x' * 43}",  # the lookup one digit short
    f"{PREFIX}0123456789abX{'x' * 43}",  # no separator
    f"MP3K_0123456789ab_{'x' * 43}",
])
def test_malformed_keys_do_not_parse(text):
    assert key_parse(text) is None


def test_only_the_prefix_marks_a_credential_as_a_key():
    assert is_api_key(f"{PREFIX}anything") and not is_api_key("eyJhbGciOi") and not is_api_key(f" {PREFIX}")


# --- services --------------------------------------------------------------------------------------------------------
def test_api_key_create_stores_only_the_lookup_and_the_hash(user):
    api_key, key = api_key_create(user=user, name="backup script")
    row = ApiKey.objects.get(pk=api_key.pk)
    lookup, secret = key_parse(key)
    assert (row.user, row.name, row.lookup, row.revoked_at, row.last_used_at) == (user, "backup script", lookup, None, None)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == f"{PREFIX}{lookup}" and row.prefix in str(row)
    with connection.cursor() as cursor:  # the key, or its secret, in no column of the row
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table} WHERE id = %s", [row.pk.hex])
        stored = " ".join(str(value) for value in cursor.fetchone())
    assert secret not in stored and key not in stored


def test_api_key_revoke_once(user):
    api_key, _ = api_key_create(user=user, name="ci")
    assert api_key_revoke(api_key=api_key) is True
    first = ApiKey.objects.get(pk=api_key.pk).revoked_at
    assert first is not None and api_key.revoked_at == first
    assert api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk)) is False
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == first  # the moment of the first revoke stays


def test_api_key_touch_writes_at_most_once_per_minute(user):
    api_key, _ = api_key_create(user=user, name="poller")
    assert api_key_touch(api_key=api_key) is True
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:  # the copy in hand says it was just used: no query at all
        assert api_key_touch(api_key=api_key) is False
    assert len(queries) == 0
    # Another request's copy, loaded before the first write, writes nothing either: the update is conditional.
    stale_copy = ApiKey.objects.get(pk=api_key.pk)
    stale_copy.last_used_at = None
    assert api_key_touch(api_key=stale_copy) is False
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first
    # A minute later it is recorded again.
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=first - LAST_USED_GRANULARITY)
    later = ApiKey.objects.get(pk=api_key.pk)
    assert api_key_touch(api_key=later) is True
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first - LAST_USED_GRANULARITY


# --- selectors -------------------------------------------------------------------------------------------------------
def test_api_key_list_is_the_users_working_keys_newest_first(user, other_user):
    older, _ = api_key_create(user=user, name="older")
    newer, _ = api_key_create(user=user, name="newer")
    ApiKey.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=1))
    revoked, _ = api_key_create(user=user, name="revoked")
    api_key_revoke(api_key=revoked)
    api_key_create(user=other_user, name="theirs")
    assert [api_key.name for api_key in api_key_list(user=user)] == ["newer", "older"]


def test_api_key_get_finds_only_a_working_key_of_the_user(user, other_user):
    mine, _ = api_key_create(user=user, name="mine")
    theirs, _ = api_key_create(user=other_user, name="theirs")
    revoked, _ = api_key_create(user=user, name="revoked")
    api_key_revoke(api_key=revoked)
    assert api_key_get(user=user, key_id=mine.pk) == mine
    assert api_key_get(user=user, key_id=str(mine.pk)) == mine
    for key_id in (theirs.pk, revoked.pk, uuid.uuid4(), "not-a-uuid", "", None):
        assert api_key_get(user=user, key_id=key_id) is None, key_id


def test_api_key_authenticate_answers_the_key_with_its_user(user):
    api_key, key = api_key_create(user=user, name="ci")
    found = api_key_authenticate(key=key)
    assert found == api_key
    with CaptureQueriesContext(connection) as queries:
        assert found.user == user  # loaded with the key: no second query
    assert len(queries) == 0


def test_a_wrong_secret_or_an_unknown_key_is_invalid(user):
    _, key = api_key_create(user=user, name="ci")
    lookup, secret = key_parse(key)
    wrong_secret = f"{PREFIX}{lookup}_{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"
    unknown_lookup = f"{PREFIX}{'0' * 12 if lookup != '0' * 12 else '1' * 12}_{secret}"
    for attempt in (wrong_secret, unknown_lookup, key[:-1], "mp3k_", "not a key at all"):
        with pytest.raises(ApiKeyInvalid) as refused:
            api_key_authenticate(key=attempt)
        assert refused.value.message == ApiKeyInvalid.message, attempt


def test_a_revoked_key_says_so_but_only_to_the_right_secret(user):
    api_key, key = api_key_create(user=user, name="ci")
    api_key_revoke(api_key=api_key)
    with pytest.raises(ApiKeyRevoked) as refused:
        api_key_authenticate(key=key)
    assert refused.value.status == 401 and "revoked" in refused.value.message
    lookup, _ = key_parse(key)
    with pytest.raises(ApiKeyInvalid):  # its lookup alone learns nothing
        api_key_authenticate(key=f"{PREFIX}{lookup}_{'A' * 43}")


def test_a_key_of_a_deactivated_account_is_refused_and_says_why(db):
    owner = UserFactory()
    _, key = api_key_create(user=owner, name="ci")
    owner.is_active = False
    owner.save()
    with pytest.raises(ApiKeyInvalid) as refused:
        api_key_authenticate(key=key)
    assert refused.value.message == ACCOUNT_DISABLED and refused.value.status == 401
