"""JWT sign-in, the signed-in user, the services and the manager.

Registration, revocation and throttling have files of their own (test_registration.py, test_tokens.py,
test_throttling.py)."""

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import user_create
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def sign_in(client, email, password=PASSWORD):
    return client.post("/api/auth/token/", {"email": email, "password": password})


# --- Tokens and the signed-in user -------------------------------------------------------------------------------
def test_token_pair_refresh_and_me(client, user):
    tokens = sign_in(client, user.email)
    assert tokens.status_code == 200
    assert set(tokens.json()) == {"access", "refresh"}

    refreshed = client.post("/api/auth/token/refresh/", {"refresh": tokens.json()["refresh"]})
    assert refreshed.status_code == 200
    access = refreshed.json()["access"]

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    me = client.get("/api/auth/me/")
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    assert me.json()["email"] == user.email
    assert me.json()["email_verified"] is True


def test_me_without_a_token_is_401(client):
    assert client.get("/api/auth/me/").status_code == 401


def test_wrong_password_is_401(client, user):
    response = sign_in(client, user.email, password="not-the-password")
    assert response.status_code == 401
    assert "access" not in response.json()


def test_sign_in_ignores_the_case_of_the_email(client, user):
    response = sign_in(client, user.email.upper())
    assert response.status_code == 200, response.content
    assert "access" in response.json()


# --- Services and the manager ------------------------------------------------------------------------------------
def test_user_create_lowercases_and_validates():
    user = user_create(email="Some.One@Example.COM", password=PASSWORD)
    assert user.email == "some.one@example.com"
    assert user.check_password(PASSWORD)
    assert not user.is_staff
    with pytest.raises(ValidationError):
        user_create(email="weak@example.com", password="password")
    with pytest.raises(ValidationError):
        user_create(email="SOME.ONE@example.com", password=PASSWORD)  # the same address
    assert User.objects.count() == 1


def test_manager_creates_users_and_superusers():
    user = User.objects.create_user("Plain@Example.com", PASSWORD)
    assert (user.email, user.is_staff, user.is_superuser) == ("plain@example.com", False, False)
    assert not user.email_verified  # a person signing up confirms the address through the emailed link
    admin = User.objects.create_superuser("Boss@Example.com", PASSWORD)
    assert (admin.email, admin.is_staff, admin.is_superuser) == ("boss@example.com", True, True)
    assert admin.email_verified  # `createsuperuser` accounts count as verified
    assert User.objects.get_by_natural_key("BOSS@example.COM") == admin
    with pytest.raises(ValueError):
        User.objects.create_user("", PASSWORD)
