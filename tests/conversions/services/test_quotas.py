"""conversions.services.quotas against the real database and the real ffmpeg (no workers): the limits, their
defaults and overrides, the upload records, the verification gate and the lock that keeps concurrent uploads of one
account from all passing."""

import threading
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from conversions import engine
from conversions.models import Conversion, UploadRecord
from conversions.selectors import conversion_usage
from conversions.services import conversion_create, conversion_retry, quota_limits
from conversions.services.quotas import NO_LIMITS, Limits, owner_lock, upload_check_declared, upload_record_create
from mp3converter.errors import EmailNotVerified, ErrorCode, QuotaExceeded, RateLimited
from mp3converter.settings.base import _limit
from tests.conversions.services.helpers import uploaded
from tests.factories import ConversionFactory, UserFactory
from tests.utils import stored_files, wait_for

MB = 1024 * 1024
Status = Conversion.Status


@pytest.fixture
def defaults(settings):
    settings.QUOTA_ACTIVE_JOBS, settings.QUOTA_UPLOADS_PER_HOUR, settings.QUOTA_STORAGE_MB = 3, 30, 10240
    return settings


@pytest.fixture
def create(media):
    """conversion_create on a generated file; the stored sources are removed at the end."""
    made = []

    def make(owner, spec="mp4_aac"):
        with uploaded(media(spec)) as upload:
            conversion = conversion_create(owner=owner, upload=upload, options=engine.OutputOptions())
        made.append(conversion)
        return conversion

    yield make
    for conversion in made:
        default_storage.delete(conversion.source.name)


# --- the limits and where they come from ------------------------------------------------------------------------
def test_defaults_come_from_the_settings_and_the_user_overrides_each(db, defaults):
    assert quota_limits(user=UserFactory()) == Limits(active_jobs=3, uploads_per_hour=30, storage_mb=10240)
    own = UserFactory(quota_active_jobs=5, quota_storage_mb=0)
    assert quota_limits(user=own) == Limits(active_jobs=5, uploads_per_hour=30, storage_mb=0)
    assert quota_limits(user=UserFactory(is_staff=True, quota_active_jobs=1)) == NO_LIMITS


@pytest.mark.parametrize(
    ("value", "limit"), [(None, 3), ("", 3), ("7", 7), ("0", 0), ("unlimited", None), (" Unlimited ", None)]
)
def test_a_limit_setting_is_a_number_or_unlimited(monkeypatch, value, limit):
    if value is None:
        monkeypatch.delenv("QUOTA_TEST_LIMIT", raising=False)
    else:
        monkeypatch.setenv("QUOTA_TEST_LIMIT", value)
    assert _limit("QUOTA_TEST_LIMIT", 3) == limit


@pytest.mark.parametrize("value", ["-1", "three", "1.5"])
def test_a_bad_limit_setting_stops_the_service(monkeypatch, value):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("QUOTA_TEST_LIMIT", value)
    with pytest.raises(ImproperlyConfigured, match="QUOTA_TEST_LIMIT"):
        _limit("QUOTA_TEST_LIMIT", 3)


def test_an_unlimited_default_sets_no_limit(db, defaults, create):
    defaults.QUOTA_ACTIVE_JOBS = None
    user = UserFactory()
    ConversionFactory.create_batch(4, owner=user, status=Status.QUEUED)
    assert quota_limits(user=user).active_jobs is None
    assert create(user).status == Status.QUEUED


# --- active jobs ------------------------------------------------------------------------------------------------
def test_active_jobs_past_the_limit_are_refused_before_the_probe_and_keep_nothing(db, defaults, create, media):
    user = UserFactory(quota_active_jobs=2)
    create(user)
    ConversionFactory(owner=user, status=Status.PROCESSING)
    ConversionFactory(owner=user, status=Status.DONE)  # finished jobs do not count
    before = stored_files()
    with uploaded(media("text")) as upload, pytest.raises(RateLimited) as refused:  # not even probed: not a 415
        conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
    assert refused.value.code == ErrorCode.RATE_LIMITED and refused.value.retry_after == 60
    assert refused.value.message == (
        "You already have 2 conversions queued or running, the most your account allows at once. Wait for one to finish."
    )
    assert stored_files() == before
    assert Conversion.objects.filter(owner=user).count() == 3


def test_retry_by_the_owner_counts_as_a_new_active_job(db, defaults):
    user = UserFactory(quota_active_jobs=1)
    ConversionFactory(owner=user, status=Status.QUEUED)
    failed = ConversionFactory(owner=user, status=Status.FAILED)
    with pytest.raises(RateLimited, match="1 conversion queued or running"):
        conversion_retry(conversion=failed, enforce_limits=True)
    assert Conversion.objects.get(pk=failed.pk).status == Status.FAILED
    # A job that cannot be retried is not a limit's business: it stays a refusal of the transition.
    assert conversion_retry(conversion=ConversionFactory(owner=user, status=Status.DONE), enforce_limits=True) is False
    # An admin's retry (the default) is not limited.
    assert conversion_retry(conversion=failed) is True


# --- uploads per hour -------------------------------------------------------------------------------------------
def test_uploads_per_hour_survive_deleting_the_jobs_and_retry_after_counts_down(db, defaults, create):
    user = UserFactory(quota_uploads_per_hour=2)
    UploadRecord.objects.create(owner=user, created_at=timezone.now() - timedelta(minutes=50))
    create(user).delete()  # a deleted job still counts
    assert conversion_usage(user=user).uploads_last_hour == 2
    with pytest.raises(RateLimited) as refused:
        upload_check_declared(user=user, content_length="1000")
    # Below the limit again when the upload of 50 minutes ago leaves the window: in 10 minutes.
    assert 595 <= refused.value.retry_after <= 600
    assert refused.value.message == (
        "You have made 2 uploads in the last hour, and your account allows 2 per hour. Try again in 10 minutes."
    )


def test_old_upload_records_are_pruned_and_do_not_count(db, defaults):
    user, other = UserFactory(quota_uploads_per_hour=1), UserFactory()
    UploadRecord.objects.create(owner=user, created_at=timezone.now() - timedelta(hours=1, seconds=1))
    UploadRecord.objects.create(owner=other, created_at=timezone.now() - timedelta(hours=2))
    upload_check_declared(user=user, content_length=None)  # the old one is outside the window
    upload_record_create(user=user)
    assert UploadRecord.objects.filter(owner=user).count() == 1  # the old record went
    assert UploadRecord.objects.filter(owner=other).count() == 1  # another user's is theirs to prune


def test_a_limit_of_zero_allows_no_upload(db, defaults):
    with pytest.raises(RateLimited, match="may not upload files"):
        upload_check_declared(user=UserFactory(quota_uploads_per_hour=0), content_length=None)
    with pytest.raises(RateLimited, match="may not start conversions"):
        upload_check_declared(user=UserFactory(quota_active_jobs=0), content_length=None)


# --- storage ----------------------------------------------------------------------------------------------------
def test_storage_counts_sources_and_mp3s_together(db, defaults, create, media):
    user = UserFactory(quota_storage_mb=1)
    ConversionFactory(owner=user, status=Status.DONE, source="sources/a", source_size=MB // 2, mp3_size=MB // 2 - 100)
    ConversionFactory(owner=UserFactory(), source="sources/b", source_size=10 * MB)  # another user's
    assert conversion_usage(user=user).storage_bytes == MB - 100
    before = stored_files()
    with uploaded(media("mp4_aac")) as upload, pytest.raises(QuotaExceeded) as refused:
        conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
    size = media("mp4_aac").stat().st_size
    assert refused.value.code == ErrorCode.QUOTA_EXCEEDED
    assert refused.value.message == (
        f"This upload ({-(-size // 1024)} KB) would pass your storage limit of 1 MB: you already store 1.0 MB. "
        "Delete some conversions and try again."
    )
    assert stored_files() == before
    assert Conversion.objects.filter(owner=user).count() == 1


def test_the_declared_length_less_the_form_framing_is_checked(db, defaults):
    user = UserFactory(quota_storage_mb=1)
    ConversionFactory(owner=user, source="sources/a", source_size=MB - 1000)
    upload_check_declared(user=user, content_length=str(64 * 1024 + 1000))  # the file itself may still fit
    with pytest.raises(QuotaExceeded):
        upload_check_declared(user=user, content_length=str(64 * 1024 + 1001))
    upload_check_declared(user=user, content_length="not a number")  # the parser's to refuse


# --- the verification gate --------------------------------------------------------------------------------------
def test_an_unverified_account_may_not_upload_staff_included(db, defaults, settings, create, media):
    for user in (UserFactory(email_verified=False), UserFactory(email_verified=False, is_staff=True)):
        with uploaded(media("mp4_aac")) as upload, pytest.raises(EmailNotVerified):
            conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
        assert not Conversion.objects.filter(owner=user).exists()
    settings.REQUIRE_EMAIL_VERIFICATION = False
    assert create(UserFactory(email_verified=False)).status == Status.QUEUED


# --- concurrent uploads -----------------------------------------------------------------------------------------
def lock_waits() -> int:
    """Statements of this database user waiting on a locked row of accounts_user (a locking read that has not
    returned: it takes microseconds when nothing holds the row)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID != CONNECTION_ID() AND INFO LIKE %s AND INFO "
            "LIKE %s",
            ["%FOR UPDATE%", "%accounts_user%"],
        )
        return cursor.fetchone()[0]


def test_a_concurrent_upload_waits_for_the_other_and_then_counts_it(transactional_db, defaults, media):
    # Another request of the same account holds the owner's lock between its check and its commit; this upload has
    # passed its own first check (nothing is active yet) and must wait, then see the other job and be refused.
    user = UserFactory(quota_active_jobs=1)
    holding, release, outcome = threading.Event(), threading.Event(), {}

    def other_request():
        try:
            with transaction.atomic():
                owner_lock(user=user)
                ConversionFactory(owner=user, status=Status.QUEUED)
                holding.set()
                release.wait(60)
        finally:
            connection.close()

    def this_upload():
        try:
            with uploaded(media("mp4_aac")) as upload:
                outcome["job"] = conversion_create(owner=user, upload=upload, options=engine.OutputOptions())
        except RateLimited as exc:
            outcome["refused"] = exc
        finally:
            connection.close()

    before = stored_files()
    other = threading.Thread(target=other_request)
    other.start()
    assert holding.wait(30)
    upload = threading.Thread(target=this_upload)
    upload.start()
    try:
        wait_for(lambda: lock_waits() or outcome, timeout=30, message="the upload to wait for the owner's lock")
        assert not outcome, outcome  # it did not pass while the other request had not committed
    finally:
        release.set()
        other.join(30)
        upload.join(60)
    assert "refused" in outcome, outcome
    assert Conversion.objects.filter(owner=user).count() == 1
    assert stored_files() == before  # its stored source was removed again
