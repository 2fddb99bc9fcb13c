"""Registration, JWT sign-in, the signed-in user, and sign-in throttling."""

import base64

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from accounts.models import User
from accounts.services import user_create
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def register(client, email="new.person@example.com", password=PASSWORD):
    return client.post("/api/auth/register/", {"email": email, "password": password})


def sign_in(client, email, password=PASSWORD):
    return client.post("/api/auth/token/", {"email": email, "password": password})


# --- Registration ------------------------------------------------------------------------------------------------
def test_register_creates_a_user_and_returns_it_without_the_password(client):
    response = register(client, email="New.Person@Example.COM")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["id"] == User.objects.get().id
    assert "password" not in body
    assert User.objects.get().check_password(PASSWORD)


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@Example.com"])
def test_register_refuses_an_existing_email_in_any_case(client, email):
    UserFactory(email="taken@example.com")
    response = register(client, email=email)
    assert response.status_code == 400
    assert response.json()["email"] == ["An account with this email already exists."]
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password", "This password is too common."),
        ("8261947305", "This password is entirely numeric."),
        ("Xy7!", "This password is too short. It must contain at least 8 characters."),
        ("new.person.example", "The password is too similar to the email address."),
    ],
)
def test_register_refuses_a_weak_password_on_the_password_field(client, password, message):
    response = register(client, password=password)
    assert response.status_code == 400
    assert message in response.json()["password"]
    assert not User.objects.exists()


def test_register_is_refused_when_registration_is_closed(client, settings):
    settings.REGISTRATION_OPEN = False
    response = register(client)
    assert response.status_code == 403
    assert response.json()["detail"] == "Registration is closed. Ask an administrator for an account."
    assert not User.objects.exists()


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


# --- Throttling --------------------------------------------------------------------------------------------------
@pytest.fixture
def low_rates(monkeypatch):
    # The suite's environment sets very high rates; the class attribute holds the rates the throttle reads.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "3/min", "register": "2/min"})


def basic(email, password=PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


def test_token_sign_in_is_throttled(client, user, low_rates):
    statuses = [sign_in(client, user.email, password="wrong").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    throttled = sign_in(client, user.email)  # even the right password, once over the rate
    assert throttled.status_code == 429
    assert "Retry-After" in throttled


def test_classic_login_is_throttled(client, user, low_rates):
    statuses = [client.post("/login", HTTP_AUTHORIZATION=basic(user.email, "wrong")).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    throttled = client.post("/login", HTTP_AUTHORIZATION=basic(user.email))
    assert throttled.status_code == 429
    assert throttled.content.decode().startswith("too many attempts")


def test_registration_is_throttled(client, low_rates):
    assert [register(client, email=f"p{n}@example.com").status_code for n in range(2)] == [201, 201]
    assert register(client, email="p3@example.com").status_code == 429
    assert User.objects.count() == 2


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
    admin = User.objects.create_superuser("Boss@Example.com", PASSWORD)
    assert (admin.email, admin.is_staff, admin.is_superuser) == ("boss@example.com", True, True)
    assert User.objects.get_by_natural_key("BOSS@example.COM") == admin
    with pytest.raises(ValueError):
        User.objects.create_user("", PASSWORD)
