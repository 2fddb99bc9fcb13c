"""mp3converter/checks.py: what makes a signing key unfit, and the deploy check that reports it."""

import secrets

import pytest
from django.core import checks
from django.test import override_settings

from mp3converter.checks import KEY_MIN_LENGTH, key_weakness, signing_keys_check


@pytest.mark.parametrize(
    "key, weakness",
    [
        ("change-me-to-at-least-50-random-characters-see-the-comment-above", "contains the placeholder 'change-me'"),
        ("Change_Me" + "q" * 60, "contains the placeholder 'change_me'"),
        ("django-insecure-" + secrets.token_urlsafe(50), "contains the placeholder 'django-insecure'"),
        (secrets.token_urlsafe(40) + "SECRET", "contains the placeholder 'secret'"),
        ("a" * 20 + "xxxxx" + secrets.token_urlsafe(40), "contains the placeholder 'xxxxx'"),
        ("abcd" * 20, "repeats fewer than 5 different characters"),
        ("", "is 0 characters long, fewer than 50"),
        (secrets.token_urlsafe(64)[: KEY_MIN_LENGTH - 1], "is 49 characters long, fewer than 50"),
    ],
)
def test_weak_keys_are_named_for_what_is_wrong(key, weakness):
    assert key_weakness(key) == weakness


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(50), lambda: secrets.token_hex(32)])
def test_random_keys_pass(make):
    # Generated keys never trip over a placeholder: each marker is long enough not to turn up by chance.
    for _ in range(200):
        assert key_weakness(make()) is None


def test_the_deploy_check_names_each_weak_key_once():
    strong = secrets.token_urlsafe(50)
    with override_settings(SECRET_KEY=strong, SIMPLE_JWT={"SIGNING_KEY": strong}):
        assert signing_keys_check() == []
    with override_settings(SECRET_KEY="short", SIMPLE_JWT={"SIGNING_KEY": "short"}):
        [error] = signing_keys_check()
    assert (error.id, error.msg) == ("mp3converter.E001", "DJANGO_SECRET_KEY is 5 characters long, fewer than 50.")
    assert error.level == checks.ERROR and "token_urlsafe(50)" in error.hint
    with override_settings(SECRET_KEY=strong, SIMPLE_JWT={"SIGNING_KEY": "change-me-" + strong}):
        [error] = signing_keys_check()
    assert error.msg == "JWT_SIGNING_KEY contains the placeholder 'change-me'."


def test_the_deploy_check_names_a_weak_metrics_token_and_ignores_an_unset_one():
    strong = secrets.token_urlsafe(50)
    with override_settings(SECRET_KEY=strong, SIMPLE_JWT={"SIGNING_KEY": strong}, METRICS_TOKEN=""):
        assert signing_keys_check() == []
    with override_settings(SECRET_KEY=strong, SIMPLE_JWT={"SIGNING_KEY": strong}, METRICS_TOKEN="change-me-metrics"):
        [error] = signing_keys_check()
    assert (error.id, error.msg) == ("mp3converter.E001", "METRICS_TOKEN contains the placeholder 'change-me'.")


def test_the_deploy_check_runs_only_with_deploy():
    registered = checks.registry.registry.get_checks(include_deployment_checks=True)
    assert signing_keys_check in registered
    assert signing_keys_check not in checks.registry.registry.get_checks(include_deployment_checks=False)
