"""The account pages, through Django's test client with CSRF checks on, as a browser sends the forms.

The emails go through the real notify worker to the SMTP catcher (`live_workers`), as the API's do.
"""

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.apikeys import key_parse
from accounts.models import ApiKey, User
from accounts.services import api_key_create
from tests.accounts.test_registration import body_of, caught, first_message, link_in  # noqa: F401 (fixture)
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "another-long-passphrase-77"
RESET_LINK = re.compile(r"https?://\S+/account/password/reset/\S+/\S+/")


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def post_form(client: Client, path: str, data: dict):
    """GET the page (for its CSRF cookie and token), then POST the form with the token, as a browser does."""
    page = client.get(path)
    assert page.status_code == 200, page.content
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    return client.post(path, {**data, "csrfmiddlewaretoken": token})


def signed_in(user) -> Client:
    client = csrf_client()
    client.force_login(user)
    return client


# --- sign up -------------------------------------------------------------------------------------------------------
def test_sign_up_makes_an_unconfirmed_account_and_mails_a_link_that_confirms_it(live_workers, mailbox):
    client = csrf_client()
    response = post_form(client, "/account/signup/", {"email": "Page.Person@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert b"Check your email" in response.content
    user = User.objects.get(email="page.person@example.com")
    assert not user.email_verified
    [message] = caught(mailbox, "page.person@example.com")
    parts = urlsplit(link_in(body_of(message)))
    confirmed = Client().get(f"{parts.path}?{parts.query}")
    assert confirmed.status_code == 200 and b"Email address confirmed" in confirmed.content
    assert User.objects.get(pk=user.pk).email_verified


def test_sign_up_with_a_taken_address_answers_as_for_a_new_one():
    UserFactory(email="taken@example.com")
    response = post_form(csrf_client(), "/account/signup/", {"email": "taken@example.com", "password": PASSWORD})
    assert response.status_code == 200 and b"Check your email" in response.content
    assert User.objects.filter(email="taken@example.com").count() == 1


def test_sign_up_refuses_a_weak_password_next_to_the_field():
    response = post_form(csrf_client(), "/account/signup/", {"email": "weak@example.com", "password": "12345678"})
    assert response.status_code == 200
    assert b'id="id_password_error"' in response.content and b"too common" in response.content
    assert not User.objects.filter(email="weak@example.com").exists()


def test_sign_up_is_closed_when_registration_is(settings):
    settings.REGISTRATION_OPEN = False
    response = csrf_client().get("/account/signup/")
    assert response.status_code == 403 and b"Sign-up is closed" in response.content


def test_sign_up_is_throttled_like_the_api(settings):
    settings.THROTTLE_REGISTER = "2/min"
    client = csrf_client()
    for number in range(2):
        assert post_form(client, "/account/signup/", {"email": f"s{number}@example.com", "password": PASSWORD}).status_code == 200
    refused = post_form(client, "/account/signup/", {"email": "s9@example.com", "password": PASSWORD})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert b"Too many sign-ups" in refused.content
    assert not User.objects.filter(email="s9@example.com").exists()


def test_a_form_without_its_csrf_token_is_refused():
    response = csrf_client().post("/account/signup/", {"email": "x@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert not User.objects.filter(email="x@example.com").exists()


# --- sign in and out ---------------------------------------------------------------------------------------------
def test_sign_in_with_the_form_then_sign_out():
    user = UserFactory()
    client = csrf_client()
    response = post_form(client, "/account/login/", {"username": user.email.upper(), "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/account/").status_code == 200
    home = client.get("/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', home.content).group(1).decode()
    assert client.post("/account/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/account/")["Location"].startswith("/account/login/")


def test_a_wrong_password_says_so_in_words():
    user = UserFactory()
    response = post_form(csrf_client(), "/account/login/", {"username": user.email, "password": "wrong-password"})
    assert response.status_code == 200
    assert b"The email address or the password is wrong" in response.content


def test_the_sign_in_form_is_throttled_like_every_other_door(settings):
    settings.THROTTLE_LOGIN = "3/min"
    user = UserFactory()
    client = csrf_client()
    for _ in range(3):
        assert post_form(client, "/account/login/", {"username": user.email, "password": "wrong"}).status_code == 200
    refused = post_form(client, "/account/login/", {"username": user.email, "password": PASSWORD})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert b"Too many sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session


def test_the_account_page_shows_usage_against_the_limits(settings):
    settings.QUOTA_ACTIVE_JOBS = 3
    settings.QUOTA_UPLOADS_PER_HOUR = 30
    settings.QUOTA_STORAGE_MB = 100
    user = UserFactory(email_verified=False)
    page = signed_in(user).get("/account/")
    assert page.status_code == 200
    text = page.content.decode()
    assert user.email in text and "Not confirmed yet" in text
    assert re.search(r'<meter id="usage-active"[^>]*max="3" value="0"', text)
    assert re.search(r'<meter id="usage-uploads"[^>]*max="30" value="0"', text)
    assert "0\xa0bytes of 100.0\xa0MB" in text


def test_pages_that_need_an_account_send_a_stranger_to_sign_in():
    for path in ("/account/", "/account/password/", "/conversions/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/account/login/?next="), path


# --- the password --------------------------------------------------------------------------------------------------
def test_changing_the_password_keeps_the_session_and_revokes_the_api_tokens():
    user = UserFactory()
    refresh = RefreshToken.for_user(user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {refresh.access_token}")
    assert api.get("/api/auth/me/").status_code == 200

    client = signed_in(user)
    wrong = post_form(client, "/account/password/", {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert wrong.status_code == 200 and b"Your old password was entered incorrectly" in wrong.content
    changed = post_form(client, "/account/password/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert changed.status_code == 302
    assert client.get("/account/").status_code == 200  # still signed in
    assert api.get("/api/auth/me/").status_code == 401
    assert APIClient().post("/api/auth/token/refresh/", {"refresh": str(refresh)}).status_code == 401
    assert User.objects.get(pk=user.pk).check_password(NEW_PASSWORD)


def test_the_old_password_check_counts_against_the_sign_in_limit(settings):
    settings.THROTTLE_LOGIN = "2/min"
    user = UserFactory()
    client = signed_in(user)
    for _ in range(2):
        post_form(client, "/account/password/", {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    refused = post_form(client, "/account/password/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert refused.status_code == 429
    assert User.objects.get(pk=user.pk).check_password(PASSWORD)


def test_password_reset_by_email_end_to_end(live_workers, mailbox):
    user = UserFactory(email="forgetful@example.com")
    refresh = RefreshToken.for_user(user)
    client = csrf_client()
    sent = post_form(client, "/account/password/reset/", {"email": "forgetful@example.com"})
    assert sent.status_code == 302 and sent["Location"] == "/account/password/reset/sent/"
    [message] = caught(mailbox, "forgetful@example.com")
    link = RESET_LINK.search(body_of(message)).group(0)
    form_page = client.get(urlsplit(link).path, follow=True)
    assert form_page.status_code == 200 and b"Choose a new password" in form_page.content
    form_path = form_page.redirect_chain[-1][0]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form_page.content).group(1).decode()
    done = client.post(form_path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD, "csrfmiddlewaretoken": token})
    assert done.status_code == 302 and done["Location"] == "/account/password/reset/done/"
    assert User.objects.get(pk=user.pk).check_password(NEW_PASSWORD)
    assert APIClient().post("/api/auth/token/refresh/", {"refresh": str(refresh)}).status_code == 401
    used_again = Client().get(urlsplit(link).path, follow=True)
    assert b"This link does not work any more" in used_again.content


def test_password_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(live_workers, mailbox):
    sent = post_form(csrf_client(), "/account/password/reset/", {"email": "nobody@example.com"})
    assert sent.status_code == 302 and sent["Location"] == "/account/password/reset/sent/"
    UserFactory(email="somebody@example.com")
    post_form(csrf_client(), "/account/password/reset/", {"email": "somebody@example.com"})
    caught(mailbox, "somebody@example.com")  # sent after the first: had the first been sent, it would be here too
    with mailbox.lock:
        assert not [m for m in mailbox.messages[mailbox.first_of_this_test:] if "nobody@example.com" in m["To"]]


# --- API keys ------------------------------------------------------------------------------------------------------
KEY_IN_PAGE = re.compile(r'id="new-key"[^>]* value="(mp3k_[^"]+)"')


def post_on_account_page(client: Client, action: str, data: dict | None = None):
    """POST one of the account page's forms, with the CSRF token of the page, as a browser does."""
    page = client.get("/account/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    return client.post(action, {**(data or {}), "csrfmiddlewaretoken": token})


def test_a_key_made_on_the_account_page_is_shown_once_and_works():
    user = UserFactory()
    client = signed_in(user)
    assert "You have no API keys." in client.get("/account/").content.decode()
    made = post_on_account_page(client, "/account/keys/", {"name": "home server"})
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    key = KEY_IN_PAGE.search(made.content.decode()).group(1)
    assert "home server" in made.content.decode() and "shown only this once" in made.content.decode()
    me = APIClient().get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert me.status_code == 200 and me.json()["email"] == user.email

    again = client.get("/account/").content.decode()
    [api_key] = ApiKey.objects.filter(user=user)
    assert key_parse(key)[1] not in again and 'id="new-key"' not in again
    assert f"{api_key.prefix}…" in again and "home server" in again


def test_a_key_needs_a_name_on_the_page_too():
    user = UserFactory()
    response = post_on_account_page(signed_in(user), "/account/keys/", {"name": "  "})
    assert response.status_code == 200
    assert 'id="id_name_error"' in response.content.decode() and 'id="new-key"' not in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_a_key_on_the_account_page():
    user = UserFactory()
    api_key, key = api_key_create(user=user, name="old laptop")
    client = signed_in(user)
    revoked = post_on_account_page(client, f"/account/keys/{api_key.id}/revoke/")
    assert revoked.status_code == 302 and revoked["Location"] == "/account/#api-keys"
    page = client.get("/account/").content.decode()
    assert "is revoked" in page and api_key.prefix not in page
    refused = APIClient().get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert refused.status_code == 401 and refused.json()["code"] == "api_key_revoked"
    assert post_on_account_page(client, f"/account/keys/{api_key.id}/revoke/").status_code == 404  # revoked already


def test_another_users_key_cannot_be_revoked_from_the_page():
    owner, stranger = UserFactory(), UserFactory()
    api_key, key = api_key_create(user=owner, name="theirs")
    assert post_on_account_page(signed_in(stranger), f"/account/keys/{api_key.id}/revoke/").status_code == 404
    assert signed_in(stranger).get(f"/account/keys/{api_key.id}/revoke/").status_code == 405
    assert APIClient().get("/api/auth/me/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_the_key_forms_need_a_session_and_their_csrf_token():
    user = UserFactory()
    api_key, _ = api_key_create(user=user, name="kept")
    assert Client().post("/account/keys/", {"name": "x"})["Location"].startswith("/account/login/")
    assert signed_in(user).post("/account/keys/", {"name": "x"}).status_code == 403
    assert signed_in(user).post(f"/account/keys/{api_key.id}/revoke/").status_code == 403
    assert list(ApiKey.objects.values_list("name", "revoked_at")) == [("kept", None)]


def test_the_jobs_webhook_secret_is_made_on_the_account_page_and_shown_once():
    from notifications.models import JobWebhookSecret

    user = UserFactory()
    client = signed_in(user)
    made = post_on_account_page(client, "/account/webhook-secret/", {})
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    secret = JobWebhookSecret.objects.get(owner=user).secret
    assert f'value="{secret}"' in made.content.decode() and secret.startswith("whsec_")
    assert secret not in client.get("/account/").content.decode()
