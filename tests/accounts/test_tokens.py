"""Tokens can be revoked: refresh rotation with the blacklist, logout, a password change, a deactivated user."""

import base64
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tokens import AUTH_TIME_CLAIM, AccessToken, RefreshToken, epoch_us, token_revoked
from tests.factories import PASSWORD, ConversionFactory

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-brand-new-passphrase-99"


def sign_in(email, password=PASSWORD) -> dict:
    response = APIClient().post("/api/auth/token/", {"email": email, "password": password})
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def refresh(token: str):
    return APIClient().post("/api/auth/token/refresh/", {"refresh": token})


def classic_token(email, password=PASSWORD) -> str:
    basic = "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()
    response = APIClient().post("/login", HTTP_AUTHORIZATION=basic)
    assert response.status_code == 200, response.content
    return response.content.decode()


def change_password(access: str, old=PASSWORD, new=NEW_PASSWORD):
    return bearer(access).post("/api/auth/password/", {"old_password": old, "new_password": new})


# --- refresh rotation and logout ---------------------------------------------------------------------------------
def test_a_refresh_gives_a_new_pair_and_the_used_refresh_token_stops_working(user):
    pair = sign_in(user.email)
    rotated = refresh(pair["refresh"])
    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"}
    assert rotated.json()["refresh"] != pair["refresh"]
    again = refresh(pair["refresh"])
    assert again.status_code == 401
    assert refresh(rotated.json()["refresh"]).status_code == 200
    assert bearer(rotated.json()["access"]).get("/api/auth/me/").status_code == 200


def test_logout_revokes_the_refresh_token(user):
    pair = sign_in(user.email)
    response = APIClient().post("/api/auth/logout/", {"refresh": pair["refresh"]})
    assert response.status_code == 204
    assert refresh(pair["refresh"]).status_code == 401
    assert APIClient().post("/api/auth/logout/", {"refresh": pair["refresh"]}).status_code == 401
    assert APIClient().post("/api/auth/logout/", {}).status_code == 400
    assert APIClient().post("/api/auth/logout/", {"refresh": pair["access"]}).status_code == 401  # not a refresh


# --- a password change -------------------------------------------------------------------------------------------
def test_a_password_change_revokes_every_earlier_token_native_and_classic(user):
    pairs = [sign_in(user.email), sign_in(user.email)]  # two devices
    classic = classic_token(user.email)
    job = ConversionFactory(owner=user)

    response = change_password(pairs[0]["access"])
    assert response.status_code == 200, response.content
    fresh = response.json()
    assert set(fresh) == {"access", "refresh"}

    for pair in pairs:
        assert bearer(pair["access"]).get("/api/auth/me/").status_code == 401
        assert refresh(pair["refresh"]).status_code == 401
    upload = APIClient().post("/upload", {"file": ContentFile(b"x", name="a.mp4")}, HTTP_AUTHORIZATION=f"Bearer {classic}")
    download = APIClient().get("/download", {"fid": str(job.id)}, HTTP_AUTHORIZATION=f"Bearer {classic}")
    # The classic API's own contract for a token it will not take.
    assert (upload.status_code, upload.content) == (403, b"not authorized")
    assert (download.status_code, download.content) == (403, b"not authorized")

    # Tokens from after the change work, issued in the same second or not.
    assert bearer(fresh["access"]).get("/api/auth/me/").status_code == 200
    assert refresh(fresh["refresh"]).status_code == 200
    after = sign_in(user.email, NEW_PASSWORD)
    assert bearer(after["access"]).get("/api/auth/me/").status_code == 200
    new_classic = classic_token(user.email, NEW_PASSWORD)
    assert APIClient().get("/download", {"fid": str(job.id)}, HTTP_AUTHORIZATION=f"Bearer {new_classic}").status_code == 409
    assert APIClient().post("/api/auth/token/", {"email": user.email, "password": PASSWORD}).status_code == 401


def test_a_wrong_old_password_or_a_weak_new_one_changes_nothing(user):
    access = sign_in(user.email)["access"]
    wrong = change_password(access, old="not-my-password")
    assert wrong.status_code == 400
    assert wrong.json() == {"old_password": ["The current password is not correct."]}
    weak = change_password(access, new="password")
    assert weak.status_code == 400
    assert "This password is too common." in weak.json()["new_password"]
    assert APIClient().post("/api/auth/password/", {"old_password": PASSWORD, "new_password": NEW_PASSWORD}).status_code == 401
    user.refresh_from_db()
    assert user.check_password(PASSWORD) and user.tokens_valid_after is None
    assert bearer(access).get("/api/auth/me/").status_code == 200


def test_the_password_change_blacklists_the_users_outstanding_refresh_tokens(user):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    sign_in(user.email)
    sign_in(user.email)
    change_password(sign_in(user.email)["access"])
    tokens = OutstandingToken.objects.filter(user=user)
    # Three sign-ins before the change, blacklisted; the pair the change answered with, not.
    blacklisted = tokens.filter(blacklistedtoken__isnull=False).count()
    assert (blacklisted, tokens.count()) == (3, 4)


# --- the second boundary -----------------------------------------------------------------------------------------
def test_a_token_is_judged_by_its_sign_in_time_to_the_microsecond(user):
    changed = timezone.now().replace(microsecond=500_000)
    user.tokens_valid_after = changed
    before, after = AccessToken.for_user(user), AccessToken.for_user(user)
    before[AUTH_TIME_CLAIM] = epoch_us(changed) - 200_000  # the same second, just before the change
    after[AUTH_TIME_CLAIM] = epoch_us(changed) + 200_000  # the same second, just after it
    assert token_revoked(before, user)
    assert not token_revoked(after, user)
    # A token without the claim has only `iat`, whole seconds: the second of the change counts as before it.
    legacy = AccessToken.for_user(user)
    del legacy[AUTH_TIME_CLAIM]
    legacy.set_iat(at_time=changed)
    assert token_revoked(legacy, user)
    legacy.set_iat(at_time=changed + timedelta(seconds=1))
    assert not token_revoked(legacy, user)


def test_a_rotated_refresh_token_keeps_the_time_of_its_sign_in(user):
    pair = sign_in(user.email)
    original = RefreshToken(pair["refresh"])[AUTH_TIME_CLAIM]
    rotated = refresh(pair["refresh"]).json()
    assert RefreshToken(rotated["refresh"])[AUTH_TIME_CLAIM] == original
    assert AccessToken(rotated["access"])[AUTH_TIME_CLAIM] == original


# --- deactivation and deletion -----------------------------------------------------------------------------------
def test_a_deactivated_or_deleted_users_tokens_are_refused(user):
    pair = sign_in(user.email)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert bearer(pair["access"]).get("/api/auth/me/").status_code == 401
    assert refresh(pair["refresh"]).status_code == 401
    User.objects.filter(pk=user.pk).delete()
    assert bearer(pair["access"]).get("/api/auth/me/").status_code == 401
    assert refresh(pair["refresh"]).status_code == 401
