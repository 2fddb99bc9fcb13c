"""Registration that tells nobody whether an address has an account, and the emailed link that confirms it.

The web process queues the emails; the real notify worker sends them to the SMTP catcher, and the tests follow
the link found in the caught message (`live_workers`: rows are committed so the worker sees them).
"""

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from accounts.verification import account_email_send, verification_link
from tests.conversions.api.helpers import upload, wait_finished
from tests.factories import PASSWORD, UserFactory
from tests.utils import wait_for

LINK = re.compile(r"https?://\S+/api/auth/verify/\?token=\S+")


@pytest.fixture(autouse=True)
def first_message(mailbox):
    with mailbox.lock:
        mailbox.first_of_this_test = len(mailbox.messages)  # the catcher serves the whole session


def register(email="new.person@example.com", password=PASSWORD):
    return APIClient().post("/api/auth/register/", {"email": email, "password": password})


def body_of(message) -> str:
    return message.get_payload(decode=True).decode()


def this_tests_mail(mailbox, address: str) -> list:
    with mailbox.lock:
        messages = mailbox.messages[mailbox.first_of_this_test:]
    return [message for message in messages if address in message["To"]]


def caught(mailbox, address: str, count: int = 1):
    return wait_for(lambda: len(this_tests_mail(mailbox, address)) >= count and this_tests_mail(mailbox, address),
                    timeout=30, message=f"{count} email(s) to {address}")


def link_in(text: str) -> str:
    return LINK.search(text).group(0)


def follow(link: str):
    parts = urlsplit(link)
    return Client().get(f"{parts.path}?{parts.query}")


# --- the answer --------------------------------------------------------------------------------------------------
def test_register_creates_an_unverified_account_and_mails_a_link_that_confirms_it(live_workers, mailbox):
    address = "New.Person@Example.COM"
    response = register(email=address)
    assert response.status_code == 201, response.content
    assert response.json() == {"email": "new.person@example.com", "detail": response.json()["detail"]}
    assert "password" not in response.json() and "id" not in response.json()
    user = User.objects.get()
    assert (user.email, user.email_verified) == ("new.person@example.com", False)
    assert user.check_password(PASSWORD)

    [message] = caught(mailbox, "new.person@example.com")
    assert message["Subject"] == "Confirm your email address"
    link = link_in(body_of(message))
    assert link.startswith("http://testserver/api/auth/verify/?token=")  # PUBLIC_BASE_URL
    page = follow(link)
    assert page.status_code == 200
    assert "confirmed" in page.content.decode()
    user.refresh_from_db()
    assert user.email_verified
    assert follow(link).status_code == 200  # following it twice changes nothing

    client = APIClient()
    access = client.post("/api/auth/token/", {"email": user.email, "password": PASSWORD}).json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert client.get("/api/auth/me/").json()["email_verified"] is True


@pytest.mark.parametrize("typed", ["taken@example.com", "TAKEN@Example.com"])
def test_an_existing_address_gets_exactly_the_answer_a_new_one_gets(live_workers, mailbox, typed):
    owner = UserFactory(email="taken@example.com")
    known = register(email=typed, password="another-long-passphrase-7")
    new = register(email="fresh" + typed[len("taken"):], password="another-long-passphrase-7")
    assert known.status_code == new.status_code == 201
    assert known.json() == {**new.json(), "email": "taken@example.com"}
    assert new.json()["email"] == "fresh@example.com"
    assert known["Content-Type"] == new["Content-Type"]
    assert User.objects.filter(email="taken@example.com").count() == 1
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)  # nothing about the existing account changed

    # Its owner hears that someone tried, with no link that could confirm anything; the new address gets its link.
    assert LINK.search(body_of(caught(mailbox, "fresh@example.com")[0]))
    [message] = caught(mailbox, "taken@example.com")
    assert message["Subject"] == "Someone tried to sign up with your address"
    assert not LINK.search(body_of(message))


@pytest.mark.django_db
def test_a_known_address_costs_a_password_hash_too(monkeypatch):
    # About the same time either way: the expensive step, hashing the password, happens in both.
    hashed = []
    original = MD5PasswordHasher.encode
    monkeypatch.setattr(MD5PasswordHasher, "encode", lambda self, *a, **k: hashed.append(1) or original(self, *a, **k))
    UserFactory(email="taken@example.com")
    hashed.clear()
    register(email="taken@example.com")
    known = len(hashed)
    hashed.clear()
    register(email="fresh@example.com")
    assert known == len(hashed) == 1


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password", "This password is too common."),
        ("8261947305", "This password is entirely numeric."),
        ("Xy7!", "This password is too short. It must contain at least 8 characters."),
        ("new.person.example", "The password is too similar to the email address."),
    ],
)
@pytest.mark.django_db
def test_a_weak_password_is_refused_on_the_password_field_for_any_address(password, message):
    UserFactory(email="taken.person@example.com")
    for address in ("new.person@example.com", "taken.person@example.com"):
        response = register(email=address, password=password.replace("new.person", address.split("@")[0]))
        assert response.status_code == 400
        assert message in response.json()["password"]
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_register_is_refused_when_registration_is_closed(settings):
    settings.REGISTRATION_OPEN = False
    response = register()
    assert response.status_code == 403
    assert response.json()["detail"] == "Registration is closed. Ask an administrator for an account."
    assert not User.objects.exists()


# --- the link ----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_expired_a_damaged_or_a_stale_link_confirms_nothing(settings):
    user = UserFactory(email_verified=False)
    link = verification_link(user)
    assert follow(link.replace("token=", "token=x")).status_code == 400
    settings.EMAIL_VERIFICATION_DAYS = 0  # every link is past its age now
    expired = follow(link)
    assert expired.status_code == 400
    assert "expired" in expired.content.decode()
    settings.EMAIL_VERIFICATION_DAYS = 3
    user.email = "moved@example.com"  # the link was sent to the old address
    user.save()
    assert follow(link).status_code == 400
    user.refresh_from_db()
    assert not user.email_verified
    assert follow(verification_link(user)).status_code == 200


def test_resend_sends_a_new_working_link_and_nothing_once_confirmed(live_workers, mailbox):
    user = UserFactory(email_verified=False)
    client = APIClient()
    client.force_authenticate(user)
    assert client.post("/api/auth/verify/resend/").status_code == 202
    [message] = caught(mailbox, user.email)
    assert follow(link_in(body_of(message))).status_code == 200
    client.force_authenticate(User.objects.get(pk=user.pk))
    assert client.post("/api/auth/verify/resend/").status_code == 200
    assert len(this_tests_mail(mailbox, user.email)) == 1
    assert APIClient().post("/api/auth/verify/resend/").status_code == 401


def test_upload_is_refused_until_the_address_is_confirmed(live_workers, mailbox, media):
    register(email="uploader@example.com")
    client = APIClient()
    access = client.post("/api/auth/token/", {"email": "uploader@example.com", "password": PASSWORD}).json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    refused = upload(client, media("mp4_aac"))
    assert refused.status_code == 403
    assert refused.json()["code"] == "email_not_verified"

    [message] = caught(mailbox, "uploader@example.com")
    assert follow(link_in(body_of(message))).status_code == 200
    accepted = upload(client, media("mp4_aac"))
    assert accepted.status_code == 202, accepted.content
    assert wait_finished(client, accepted.json()["id"])["status"] == "done"
    assert client.delete(f"/api/conversions/{accepted.json()['id']}/").status_code == 204


@pytest.mark.django_db
def test_under_the_local_file_backend_the_mail_lands_in_the_folder_and_its_link_works(settings, tmp_path):
    # What the notify worker does under `make run`: EMAIL_URL unset → the file backend writing into var/mail.
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    register(email="local@example.com")
    user = User.objects.get(email="local@example.com")
    assert account_email_send(user_id=user.pk, kind="verify", context={"link": verification_link(user)})
    [written] = list(tmp_path.iterdir())
    page = follow(link_in(written.read_text()))
    assert page.status_code == 200
    assert User.objects.get(email="local@example.com").email_verified


# --- accounts made by people who run the service -----------------------------------------------------------------
@pytest.mark.django_db
def test_createsuperuser_and_the_admin_add_form_make_verified_accounts(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", email="Boss@Example.com", interactive=False, verbosity=0)
    boss = User.objects.get(email="boss@example.com")
    assert boss.email_verified and boss.is_superuser

    admin = Client()
    admin.force_login(boss)
    response = admin.post("/admin/accounts/user/add/", {
        "email": "Added@Example.com", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(email="added@example.com").email_verified
