"""conversions.services.links against the real database: a link serves its job while the job's current output is the
one it was made for, and each way it stops working is told apart."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import signing
from django.db.models import F
from django.utils import timezone

from accounts.verification import verification_token
from conversions.models import Conversion
from conversions.services import (
    DownloadLink,
    LinkDeleted,
    LinkExpired,
    LinkInvalid,
    LinkReplaced,
    LinkRevoked,
    conversion_delete,
    conversion_link_create,
    conversion_link_resolve,
    conversion_links_revoke,
    conversion_retry,
    links,
)
from mp3converter.errors import InvalidState
from tests.factories import ConversionFactory

Status = Conversion.Status
PREFIX = "http://testserver/links/"


@pytest.fixture
def done(db):
    return ConversionFactory(status=Status.DONE, finished_at=timezone.now())


def token_of(link: DownloadLink) -> str:
    assert link.url.startswith(PREFIX) and link.url.endswith("/"), link.url
    return link.url[len(PREFIX):-1]


def resolve(link: DownloadLink) -> Conversion:
    return conversion_link_resolve(token=token_of(link))


@pytest.fixture
def clock(monkeypatch):
    """Sets the links' clock (the service's own, `links.now`) to a given moment."""

    def set_to(moment: datetime) -> None:
        monkeypatch.setattr(links, "now", lambda: moment)

    return set_to


# --- a working link ----------------------------------------------------------------------------------------------
def test_a_link_is_absolute_expires_after_the_configured_days_and_resolves_to_its_job(done):
    before = timezone.now()
    link = conversion_link_create(conversion=done)
    assert isinstance(link, DownloadLink)
    assert link.expires_at.tzinfo is not None and link.expires_at.microsecond == 0
    assert before + timedelta(days=7) - timedelta(seconds=1) <= link.expires_at <= timezone.now() + timedelta(days=7)
    assert resolve(link) == done
    # Nothing is stored for a link: two links are two different tokens, and both work.
    other = conversion_link_create(conversion=done)
    assert resolve(other) == done


def test_download_link_days_sets_the_lifetime(done, settings):
    settings.DOWNLOAD_LINK_DAYS = 2
    link = conversion_link_create(conversion=done)
    assert timedelta(days=2) - timedelta(seconds=2) <= link.expires_at - timezone.now() <= timedelta(days=2)


@pytest.mark.parametrize("status", [Status.QUEUED, Status.PROCESSING, Status.FAILED, Status.CANCELLED])
def test_only_a_done_job_gets_a_link(db, status):
    conversion = ConversionFactory(status=status)
    with pytest.raises(InvalidState) as refused:
        conversion_link_create(conversion=conversion)
    assert refused.value.status == 409
    assert refused.value.message == f"Only a done conversion has an MP3 to share; this one is {status}."


def test_the_state_is_read_from_the_database_not_from_a_stale_row(done):
    stale = Conversion.objects.get(pk=done.pk)
    conversion_links_revoke(conversion=done)
    assert resolve(conversion_link_create(conversion=stale)) == done  # made in the current generation
    Conversion.objects.filter(pk=done.pk).update(status=Status.QUEUED, attempt=2)
    with pytest.raises(InvalidState):
        conversion_link_create(conversion=stale)  # the row in hand still says done


# --- time --------------------------------------------------------------------------------------------------------
def test_a_link_works_until_its_expiry_and_not_from_then_on(done, clock):
    link = conversion_link_create(conversion=done)
    clock(link.expires_at - timedelta(seconds=1))
    assert resolve(link) == done
    clock(link.expires_at)
    with pytest.raises(LinkExpired) as expired:
        resolve(link)
    assert (expired.value.status, expired.value.code) == (410, "link_expired")
    assert "expired" in expired.value.message


def test_a_link_made_in_the_past_has_expired(done, clock):
    clock(timezone.now() - timedelta(days=8))
    link = conversion_link_create(conversion=done)
    clock(timezone.now())
    with pytest.raises(LinkExpired):
        resolve(link)


# --- revoking ----------------------------------------------------------------------------------------------------
def test_revoking_kills_every_earlier_link_of_the_job_only(done):
    first, second = conversion_link_create(conversion=done), conversion_link_create(conversion=done)
    bystander = ConversionFactory(owner=done.owner, status=Status.DONE)
    bystanders_link = conversion_link_create(conversion=bystander)

    conversion_links_revoke(conversion=done)
    for link in (first, second):
        with pytest.raises(LinkRevoked) as revoked:
            resolve(link)
        assert (revoked.value.status, revoked.value.code) == (410, "link_revoked")
        assert "withdrew" in revoked.value.message
    fresh = conversion_link_create(conversion=done)
    assert resolve(fresh) == done
    assert resolve(bystanders_link) == bystander

    conversion_links_revoke(conversion=done)
    with pytest.raises(LinkRevoked):
        resolve(fresh)
    assert Conversion.objects.get(pk=done.pk).links_generation == 2


def test_revoking_works_in_any_state(db):
    queued = ConversionFactory(status=Status.QUEUED)
    conversion_links_revoke(conversion=queued)
    assert Conversion.objects.get(pk=queued.pk).links_generation == 1


# --- the job's current output ------------------------------------------------------------------------------------
def test_a_retry_kills_the_links_of_the_earlier_attempt(done):
    link = conversion_link_create(conversion=done)
    # A done job cannot be retried through the API today; a job that later fails (or a future re-conversion) takes
    # the same path: a new attempt, and a new MP3 under a new name.
    Conversion.objects.filter(pk=done.pk).update(status=Status.FAILED)
    assert conversion_retry(conversion=done) is True  # on_commit never fires under `db`: nothing is queued
    with pytest.raises(LinkReplaced) as replaced:
        resolve(link)
    assert (replaced.value.status, replaced.value.code) == (410, "link_replaced")
    assert "run again" in replaced.value.message

    # Done again as attempt 2: the old link stays dead, a new one works.
    Conversion.objects.filter(pk=done.pk).update(status=Status.DONE, finished_at=timezone.now())
    with pytest.raises(LinkReplaced):
        resolve(link)
    assert resolve(conversion_link_create(conversion=done)).attempt == 2


def test_a_new_attempt_kills_the_links_even_while_it_is_done(done):
    link = conversion_link_create(conversion=done)
    Conversion.objects.filter(pk=done.pk).update(attempt=F("attempt") + 1)
    with pytest.raises(LinkReplaced):
        resolve(link)


@pytest.mark.parametrize("status", [Status.QUEUED, Status.PROCESSING, Status.FAILED, Status.CANCELLED])
def test_a_job_no_longer_done_serves_no_link(done, status):
    link = conversion_link_create(conversion=done)
    Conversion.objects.filter(pk=done.pk).update(status=status)
    with pytest.raises(LinkReplaced):
        resolve(link)


def test_deleting_the_job_kills_its_links(done):
    link = conversion_link_create(conversion=done)
    conversion_delete(conversion=done)
    with pytest.raises(LinkDeleted) as deleted:
        resolve(link)
    assert (deleted.value.status, deleted.value.code) == (410, "link_deleted")
    assert "deleted" in deleted.value.message


def test_what_a_new_link_cannot_fix_is_told_first(done, clock):
    link = conversion_link_create(conversion=done)
    clock(link.expires_at + timedelta(days=1))
    conversion_links_revoke(conversion=done)
    with pytest.raises(LinkRevoked):
        resolve(link)  # revoked and expired: the owner's decision is what the holder is told
    conversion_delete(conversion=done)
    with pytest.raises(LinkDeleted):
        resolve(link)


# --- tokens that are not links -----------------------------------------------------------------------------------
def forged_tokens(link: DownloadLink, done: Conversion) -> dict[str, str]:
    token = token_of(link)
    payload, _, signature = token.rpartition(":")
    claims = {"c": done.pk.hex, "a": done.attempt, "g": done.links_generation, "e": int(link.expires_at.timestamp())}
    return {
        "empty": "",
        "garbage": "not-a-link",
        "signature flipped": f"{payload}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "payload changed": f"{'x' if token[0] != 'x' else 'y'}{token[1:]}",
        "no signature": payload,
        "another salt": signing.dumps(claims, salt="accounts.email-verification", compress=True),
        "the email verification token": verification_token(done.owner),
        "another key": signing.dumps(claims, key="another-key-" + "k" * 40, salt=links.SALT, compress=True),
        "a list": signing.dumps([done.pk.hex, 1, 0, 2**31], salt=links.SALT),
        "not a uuid": signing.dumps({**claims, "c": "not-a-uuid"}, salt=links.SALT),
        "a number for the id": signing.dumps({**claims, "c": 12}, salt=links.SALT),
        "text for the attempt": signing.dumps({**claims, "a": "1"}, salt=links.SALT),
        "true for the generation": signing.dumps({**claims, "g": True}, salt=links.SALT),
        "an expiry past any calendar": signing.dumps({**claims, "e": 10**30}, salt=links.SALT),
    }


def test_a_token_that_does_not_verify_is_invalid(done):
    link = conversion_link_create(conversion=done)
    # The control: the same claims, well signed, resolve.
    claims = {"c": done.pk.hex, "a": 1, "g": 0, "e": int(link.expires_at.timestamp())}
    assert conversion_link_resolve(token=signing.dumps(claims, salt=links.SALT)) == done
    for name, token in forged_tokens(link, done).items():
        with pytest.raises(LinkInvalid) as invalid:
            conversion_link_resolve(token=token)
        assert (invalid.value.status, invalid.value.code) == (403, "link_invalid"), name
    assert "damaged" in LinkInvalid.message


def test_the_expiry_is_signed_with_the_rest(done):
    link = conversion_link_create(conversion=done)
    later = datetime(2100, 1, 1, tzinfo=UTC)
    claims = signing.loads(token_of(link), salt=links.SALT)
    assert claims["e"] == int(link.expires_at.timestamp())
    # Re-signing with a later expiry needs the key: a holder cannot extend a link.
    extended = signing.dumps({**claims, "e": int(later.timestamp())}, key="guessed-" + "k" * 40, salt=links.SALT)
    with pytest.raises(LinkInvalid):
        conversion_link_resolve(token=extended)
