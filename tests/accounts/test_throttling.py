"""Every door that takes a password counts failed attempts per account and per client address, in the shared cache;
failed API keys count per client address.

THROTTLE_LOGIN is 3/min here: three failures, then 429 with Retry-After, even to the right password. The client
address comes from TRUSTED_PROXY_COUNT: a rotated X-Forwarded-For never resets a count.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import environ
import pytest
from django.db import connection, connections
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import ApiKey, User
from accounts.services import api_key_revoke
from accounts.throttling import record_failure, sign_in_wait
from accounts.tokens import RefreshToken
from tests.factories import PASSWORD, UserFactory
from tests.fixtures.users import api_key_of
from tests.fixtures.workers import _test_database_url
from tests.utils import free_port, terminate, wait_for

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 3


@pytest.fixture(autouse=True)
def low_rate(settings):
    settings.THROTTLE_LOGIN = f"{LIMIT}/min"
    settings.THROTTLE_REGISTER = f"{LIMIT}/min"


def basic(email, password) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


def password_change(client, email, password, **headers):
    access = AccessToken.for_user(User.objects.get(email=email))
    return client.post("/api/auth/password/", {"old_password": password, "new_password": "a-new-passphrase-1234"},
                       HTTP_AUTHORIZATION=f"Bearer {access}", **headers)


# Each door: how to try a password, and what a wrong one answers there.
DOORS = {
    "token": (lambda c, email, pw, **h: c.post("/api/auth/token/", {"email": email, "password": pw}, **h), 401),
    "classic-login": (lambda c, email, pw, **h: c.post("/login", HTTP_AUTHORIZATION=basic(email, pw), **h), 401),
    "password-change": (password_change, 400),
    "api-auth-login": (lambda c, email, pw, **h: c.post("/api-auth/login/", {"username": email, "password": pw}, **h), 200),
    "admin-login": (lambda c, email, pw, **h: c.post("/admin/login/", {"username": email, "password": pw}, **h), 200),
}


def assert_throttled(response, door: str):
    assert response.status_code == 429, (door, response.status_code, response.content[:300])
    assert 0 < int(response["Retry-After"]) <= 61, door
    body = response.content.decode()
    if door in ("api-auth-login", "admin-login"):
        assert response["Content-Type"].startswith("text/html") and "Too many sign-in attempts" in body
    elif door == "classic-login":
        assert body.startswith("too many attempts, try again in ")
    else:
        assert "throttled" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_each_door_refuses_after_the_limit_even_with_a_rotated_forwarded_for(door):
    user = UserFactory(is_staff=True)  # the admin's login takes staff only: the right password must be good there
    attempt, wrong_status = DOORS[door]
    client = APIClient()
    statuses = [attempt(client, user.email, "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
                for n in range(LIMIT)]
    assert statuses == [wrong_status] * LIMIT
    assert_throttled(attempt(client, user.email, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.250"), door)
    user.refresh_from_db()
    assert user.check_password(PASSWORD)  # the password change did not go through either


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_one_address_trying_many_accounts_is_stopped(door):
    attempt, wrong_status = DOORS[door]
    users = [UserFactory(is_staff=True) for _ in range(LIMIT + 1)]
    client = APIClient()
    assert [attempt(client, u.email, "wrong").status_code for u in users[:LIMIT]] == [wrong_status] * LIMIT
    assert_throttled(attempt(client, users[LIMIT].email, PASSWORD), door)


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
def test_one_account_is_counted_across_addresses_behind_the_trusted_proxy(settings, door):
    settings.TRUSTED_PROXY_COUNT = 1
    attempt, wrong_status = DOORS[door]
    user, bystander = UserFactory(is_staff=True), UserFactory(is_staff=True)
    client = APIClient()
    statuses = [attempt(client, user.email, "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
                for n in range(LIMIT)]
    assert statuses == [wrong_status] * LIMIT
    assert_throttled(attempt(client, user.email, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.99"), door)
    # Another account from another address is not held up.
    assert attempt(client, bystander.email, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.100").status_code != 429


@pytest.mark.django_db
def test_behind_the_proxy_entries_the_client_adds_on_the_left_change_nothing(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    attempt, _ = DOORS["token"]
    users = [UserFactory() for _ in range(LIMIT + 1)]
    client = APIClient()
    for n, user in enumerate(users[:LIMIT]):
        attempt(client, user.email, "wrong", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 192.0.2.10")
    assert_throttled(attempt(client, users[LIMIT].email, PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.77, 192.0.2.10"),
                     "token")
    # The ingress saw another client: its count is its own.
    assert attempt(client, users[LIMIT].email, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.11").status_code == 200


@pytest.mark.django_db
def test_a_successful_sign_in_does_not_count():
    user = UserFactory()
    attempt, _ = DOORS["token"]
    client = APIClient()
    assert [attempt(client, user.email, PASSWORD).status_code for _ in range(LIMIT + 2)] == [200] * (LIMIT + 2)


@pytest.mark.django_db
def test_token_refresh_counts_failures_per_address_and_per_named_account(settings):
    client = APIClient()
    garbage = [client.post("/api/auth/token/refresh/", {"refresh": f"not-a-token-{n}"},
                           HTTP_X_FORWARDED_FOR=f"198.51.100.{n}") for n in range(LIMIT)]
    assert [response.status_code for response in garbage] == [401] * LIMIT
    assert_throttled(client.post("/api/auth/token/refresh/", {"refresh": "another"}), "token")

    settings.TRUSTED_PROXY_COUNT = 1  # now each request comes from another address
    user = UserFactory()
    revoked = RefreshToken.for_user(user)
    revoked.blacklist()
    for n in range(LIMIT):
        response = client.post("/api/auth/token/refresh/", {"refresh": str(revoked)}, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        assert response.status_code == 401
    valid = str(RefreshToken.for_user(user))
    assert_throttled(client.post("/api/auth/token/refresh/", {"refresh": valid}, HTTP_X_FORWARDED_FOR="203.0.113.50"),
                     "token")
    # The account's sign-in is held up too: one counter per account, whatever the door.
    assert_throttled(DOORS["token"][0](client, user.email, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.51"), "token")


@pytest.mark.django_db
def test_registration_is_throttled_per_address_and_per_email_address(settings):
    client = APIClient()

    def register(email, forwarded):
        return client.post("/api/auth/register/", {"email": email, "password": PASSWORD}, HTTP_X_FORWARDED_FOR=forwarded)

    assert [register(f"p{n}@example.com", f"198.51.100.{n}").status_code for n in range(LIMIT)] == [201] * LIMIT
    refused = register("p9@example.com", "198.51.100.9")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert User.objects.count() == LIMIT

    settings.TRUSTED_PROXY_COUNT = 1
    assert [register("same@example.com", f"203.0.113.{n}").status_code for n in range(LIMIT)] == [201] * LIMIT
    assert register("same@example.com", "203.0.113.9").status_code == 429


# --- API keys: failed keys count per address, like every credential ----------------------------------------------
def with_key(client, key, method="get", url="/api/conversions/", **headers):
    return getattr(client, method)(url, HTTP_AUTHORIZATION=f"Bearer {key}", **headers)


def wrong_key(n: int) -> str:
    return f"mp3k_{n:012x}_{'A' * 43}"


@pytest.mark.django_db
def test_failed_api_keys_count_and_then_even_a_good_key_waits(user, api_key):
    client = APIClient()
    statuses = [with_key(client, wrong_key(n), HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
                for n in range(LIMIT)]
    assert statuses == [401] * LIMIT
    assert_throttled(with_key(client, api_key, HTTP_X_FORWARDED_FOR="198.51.100.250"), "token")
    classic = client.get("/download", {"fid": "any"}, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert_throttled(classic, "classic-login")


@pytest.mark.django_db
def test_a_revoked_key_counts_as_a_failure_on_the_classic_api_too(user):
    revoked = api_key_of(user, "revoked")
    api_key_revoke(api_key=ApiKey.objects.get(user=user))
    client = APIClient()
    assert [client.get("/download", {"fid": "any"}, HTTP_AUTHORIZATION=f"Bearer {revoked}").status_code
            for _ in range(LIMIT)] == [401] * LIMIT
    assert_throttled(with_key(client, api_key_of(user, "new")), "token")


@pytest.mark.django_db
def test_failed_keys_and_failed_passwords_share_the_addresss_count(user, api_key):
    client = APIClient()
    assert with_key(client, wrong_key(1)).status_code == 401
    assert DOORS["token"][0](client, user.email, "wrong").status_code == 401
    assert with_key(client, wrong_key(2)).status_code == 401
    assert_throttled(DOORS["token"][0](client, user.email, PASSWORD), "token")
    assert_throttled(with_key(client, api_key), "token")


@pytest.mark.django_db
def test_a_working_key_does_not_count(user, api_key):
    client = APIClient()
    assert [with_key(client, api_key).status_code for _ in range(LIMIT + 2)] == [200] * (LIMIT + 2)
    assert sign_in_wait(None, None) is None


@pytest.mark.django_db
def test_keys_are_counted_per_client_address_behind_the_trusted_proxy(settings, user, api_key):
    settings.TRUSTED_PROXY_COUNT = 1
    client = APIClient()
    for n in range(LIMIT):
        assert with_key(client, wrong_key(n), HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 401
    assert_throttled(with_key(client, api_key, HTTP_X_FORWARDED_FOR="203.0.113.7"), "token")
    # A key names no account until it matches: the owner, from another address, is not held up.
    assert with_key(client, api_key, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 200


# --- one counter for every process ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_counts_live_in_the_database_cache(settings):
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    user = UserFactory()
    DOORS["token"][0](APIClient(), user.email, "wrong")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT cache_key FROM {settings.CACHES['default']['LOCATION']}")
        keys = {row[0] for row in cursor.fetchall()}
    assert any("signin-failures:account:" in key for key in keys), keys
    assert any("signin-failures:address:127.0.0.1" in key for key in keys), keys


def failures_at_once(email: str, count: int) -> None:
    """`count` failed sign-ins for `email`, each from its own thread (and database connection), all released at once."""
    start = threading.Barrier(count)
    errors = []

    def fail():
        try:
            start.wait(timeout=30)
            record_failure(None, email)
        except Exception as error:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fail) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def assert_failures_at_once_are_all_counted(limit: int):
    # Fewer failures than the limit, at once: each one counts, none overwrites another (a read-then-write count
    # would lose most of them, and let a guesser running many requests in parallel try without end).
    email = UserFactory().email
    failures_at_once(email, limit - 1)
    assert sign_in_wait(None, email) is None
    failures_at_once(email, 1)
    assert 0 < sign_in_wait(None, email) <= 61  # the last one fills the limit
    failures_at_once(email, limit * 4)  # and more, at once, changes nothing
    assert 0 < sign_in_wait(None, email) <= 61


@pytest.fixture
def high_limit(settings) -> int:
    """A limit high enough for many failures at once."""
    settings.THROTTLE_LOGIN = "12/min"
    return 12


def test_failures_at_once_are_all_counted_in_the_database_cache(transactional_db, high_limit):
    assert_failures_at_once_are_all_counted(high_limit)


def test_cache_url_moves_the_counts_to_redis(transactional_db, settings, redis_url, high_limit):
    import redis

    settings.CACHES = {"default": environ.Env.cache_url_config(redis_url)}  # as CACHE_URL=redis://… configures it
    user = UserFactory()
    client = APIClient()
    assert [DOORS["token"][0](client, user.email, "wrong").status_code for _ in range(high_limit)] == [401] * high_limit
    assert_throttled(DOORS["token"][0](client, user.email, PASSWORD), "token")
    keys = {key.decode() for key in redis.Redis.from_url(redis_url).keys("*signin-failures*")}
    assert any("signin-failures:account:" in key for key in keys), keys
    with connection.cursor() as cursor:  # and nothing in the database cache
        cursor.execute("SELECT COUNT(*) FROM django_cache WHERE cache_key LIKE '%signin-failures%'")
        assert cursor.fetchone()[0] == 0
    assert_failures_at_once_are_all_counted(high_limit)


def post(url: str, fields: dict) -> int:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:  # not listening yet
        return 0


def test_a_separate_web_process_shares_the_count(transactional_db, tmp_path):
    user = UserFactory()  # THROTTLE_LOGIN is low here (low_rate); the web process gets the same from its environment
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "DATABASE_URL": _test_database_url(), "THROTTLE_LOGIN": f"{LIMIT}/min",
           "WEB_BIND": f"127.0.0.1:{port}", "WEB_WORKERS": "1", "WEB_THREADS": "2"}
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen([str(ROOT / "docker" / "bin" / "web")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: web.poll() is None and post(f"{base}/api/auth/logout/", {}) == 400, timeout=60,
                 message="the web process to answer")
        wrong = {"email": user.email, "password": "wrong"}
        assert [post(f"{base}/api/auth/token/", wrong) for _ in range(LIMIT - 1)] == [401] * (LIMIT - 1)
        assert DOORS["token"][0](APIClient(), user.email, "wrong").status_code == 401  # the last one, here
        assert post(f"{base}/api/auth/token/", {"email": user.email, "password": PASSWORD}) == 429
        assert_throttled(DOORS["token"][0](APIClient(), user.email, PASSWORD), "token")
    finally:
        terminate(web)
        log.close()
    assert "Traceback" not in (tmp_path / "web.log").read_text(), json.dumps((tmp_path / "web.log").read_text()[-2000:])
