"""The Django admin for conversions and users, as an operator uses it."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from conversions import services
from conversions.models import Conversion
from conversions.services import lifecycle
from mp3converter.errors import InternalError
from tests.conversions.api.helpers import upload
from tests.factories import PASSWORD, ConversionFactory, UserFactory
from tests.utils import wait_for

CHANGELIST = "/admin/conversions/conversion/"
FAILED = {"status": Conversion.Status.FAILED, "error_code": "corrupt_media",
          "error_message": "The file is damaged.", "error_detail": "moov atom not found"}


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def listed(client, query: str) -> list[Conversion]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


# --- Conversion changelist and change page -----------------------------------------------------------------------
def test_changelist_filters_by_status(admin_client):
    failed, done = ConversionFactory(**FAILED), ConversionFactory(status=Conversion.Status.DONE)
    assert set(listed(admin_client, "")) == {failed, done}
    assert listed(admin_client, "?status__exact=failed") == [failed]


def test_changelist_shows_and_filters_error_codes_by_their_labels(admin_client):
    failed, done = ConversionFactory(**FAILED), ConversionFactory(status=Conversion.Status.DONE)
    assert listed(admin_client, "?error_code=corrupt_media") == [failed]
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Corrupt Media (corrupt_media)" in page  # the column
    assert '?error_code=corrupt_media"' in page and ">Corrupt Media</a>" in page  # the filter, only codes in use
    assert "Timeout" not in page
    assert done in listed(admin_client, "")


def test_changelist_searches_by_owner_email(admin_client):
    mine = ConversionFactory(owner=UserFactory(email="findme@example.com"))
    ConversionFactory()
    assert listed(admin_client, "?q=findme@example.com") == [mine]
    assert listed(admin_client, f"?q={mine.id}") == [mine]


def between(start, end) -> str:
    return "?" + urlencode({"created_at__gte": str(start), "created_at__lt": str(end)})


def test_changelist_date_filters(admin_client):
    job = ConversionFactory()
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)  # as the "Today" link sends it
    day = timedelta(days=1)
    assert listed(admin_client, between(today, today + day)) == [job]
    assert listed(admin_client, between(today - day, today)) == []
    assert listed(admin_client, f"?created_at__year={today.year}&created_at__month={today.month}") == [job]
    assert listed(admin_client, f"?created_at__year={today.year - 1}") == []


def test_change_page_shows_the_failure(admin_client):
    job = ConversionFactory(**FAILED)
    response = admin_client.get(f"{CHANGELIST}{job.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Corrupt Media" in page  # error_code, by its label
    assert "The file is damaged." in page
    assert "moov atom not found" in page  # error_detail: for operators, never in the API


def test_change_page_lists_a_split_jobs_tracks_read_only(admin_client):
    job = ConversionFactory(status="done", options={"split": "chapters"})
    job.tracks.create(number=1, title="Opening Act", start_seconds=0, duration_seconds=2,
                      mp3=f"tracks/{job.id}-1-001.mp3", size=1234)
    page = admin_client.get(f"{CHANGELIST}{job.id}/change/").content.decode()
    assert "Opening Act" in page and f"tracks/{job.id}-1-001.mp3" in page
    assert 'name="tracks-0-title"' not in page  # shown, not editable


def test_change_page_names_the_stored_files_without_linking_them(admin_client, files_in_s3):
    # A file field would be shown as a link to its URL, and the shared storages (GridFS, S3) have none.
    job = ConversionFactory(status=Conversion.Status.DONE)
    Conversion.objects.filter(pk=job.pk).update(source=f"sources/{job.id}", mp3=f"mp3/{job.id}-1.mp3")
    response = admin_client.get(f"{CHANGELIST}{job.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"sources/{job.id}" in page
    assert f"mp3/{job.id}-1.mp3" in page
    assert f'href="sources/{job.id}"' not in page


# --- Actions, against real workers -------------------------------------------------------------------------------
def run_action(client, action: str, job: Conversion):
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [str(job.pk)]}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def status_of(job_id) -> str:
    return Conversion.objects.get(pk=job_id).status


@pytest.mark.e2e
def test_retry_failed_converts_again_and_resend_email_sends_a_second_email(
    live_workers, admin_client, api_client, user, media, mailbox, monkeypatch
):
    # A real upload whose queueing is held back, so the job is still queued when it is failed.
    with monkeypatch.context() as held:
        held.setattr(lifecycle, "conversion_enqueue", lambda **kwargs: None)
        response = upload(api_client, media("mp4_aac"))
    assert response.status_code == 202, response.content
    job = Conversion.objects.get(pk=response.json()["id"])
    assert services.conversion_mark_failed(conversion_id=job.id, error=InternalError("Boom.", detail="x"))

    assert run_action(admin_client, "retry_failed", job) == [
        "1 conversion(s) queued again; 0 skipped (not failed or cancelled, or expired)."
    ]
    wait_for(lambda: status_of(job.id) == Conversion.Status.DONE, timeout=90, message="the retried job to finish")
    job.refresh_from_db()
    assert (job.error_code, job.error_message, job.error_detail) == ("", "", "")
    assert job.mp3 and job.mp3_size > 0
    first = wait_for(lambda: mailbox.to(user.email), timeout=30, message="the first email")
    assert [message["Subject"] for message in first] == ["MP3 Download"]

    assert run_action(admin_client, "resend_email", job) == ["1 email(s) queued."]
    wait_for(lambda: len(mailbox.to(user.email)) == 2, timeout=30, message="the second email")
    assert [message["Subject"] for message in mailbox.to(user.email)] == ["MP3 Download", "MP3 Download"]


@pytest.mark.parametrize("status", [Conversion.Status.DONE, Conversion.Status.EXPIRED])
def test_retry_skips_jobs_that_are_not_failed(admin_client, status):
    job = ConversionFactory(status=status)
    assert run_action(admin_client, "retry_failed", job) == [
        "0 conversion(s) queued again; 1 skipped (not failed or cancelled, or expired)."
    ]
    assert status_of(job.id) == status


# --- Users -------------------------------------------------------------------------------------------------------
def test_user_changelist_and_add_page_load(admin_client, user):
    response = admin_client.get("/admin/accounts/user/")
    assert response.status_code == 200
    assert user.email in response.content.decode()
    assert admin_client.get("/admin/accounts/user/add/").status_code == 200


def test_admin_creates_a_user_who_can_sign_in(admin_client):
    response = admin_client.post(
        "/admin/accounts/user/add/", {"email": "New.Staff@Example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.content[:2000]
    created = User.objects.get(email__iexact="new.staff@example.com")
    assert created.email == "new.staff@example.com"
    tokens = Client().post("/api/auth/token/", {"email": "new.staff@example.com", "password": PASSWORD})
    assert tokens.status_code == 200, tokens.content


def test_admin_refuses_an_existing_email_in_another_case(admin_client, user):
    response = admin_client.post(
        "/admin/accounts/user/add/", {"email": user.email.upper(), "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200  # the form again, with an error
    assert response.context["adminform"].form.errors["email"]
    assert User.objects.filter(email__iexact=user.email).count() == 1


# --- Actions need the change permission --------------------------------------------------------------------------
def staff_client(*codenames: str) -> Client:
    from django.contrib.auth.models import Permission

    staff = UserFactory(is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    return client


def test_a_staff_user_who_may_only_view_is_offered_no_action_and_posting_one_does_nothing(db):
    from notifications.models import Delivery
    from tests.factories import DeliveryFactory

    viewer = staff_client("view_conversion")
    failed, queued = ConversionFactory(**FAILED), ConversionFactory(status=Conversion.Status.QUEUED)
    delivery = DeliveryFactory()
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200
    assert {failed, queued, delivery.conversion} <= set(page.context["cl"].result_list)  # may look...
    for action in ("retry_failed", "cancel", "resend_email"):
        assert f'value="{action}"' not in page.content.decode()  # ...but is offered nothing to do
    for action, job in (("retry_failed", failed), ("cancel", queued), ("resend_email", delivery.conversion)):
        response = viewer.post(CHANGELIST, {"action": action, "_selected_action": [str(job.pk)], "index": "0"})
        assert response.status_code in (200, 302, 403)
    assert Conversion.objects.get(pk=failed.pk).status == Conversion.Status.FAILED
    assert Conversion.objects.get(pk=failed.pk).attempt == 1
    assert Conversion.objects.get(pk=queued.pk).status == Conversion.Status.QUEUED
    assert list(Delivery.objects.values_list("state", "tries")) == [("delivered", 1)]


def test_a_staff_user_who_may_change_conversions_is_offered_the_actions(db):
    editor = staff_client("view_conversion", "change_conversion")
    cancelled = ConversionFactory(status=Conversion.Status.QUEUED)
    page = editor.get(CHANGELIST).content.decode()
    for action in ("retry_failed", "cancel", "resend_email"):
        assert f'value="{action}"' in page
    assert run_action(editor, "cancel", cancelled) == ["1 conversion(s) cancelled; 0 skipped (already finished)."]
    assert status_of(cancelled.pk) == Conversion.Status.CANCELLED
