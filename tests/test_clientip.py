"""The client address behind a configured count of trusted proxies (mp3converter/clientip.py)."""

import pytest
from django.test import RequestFactory

from mp3converter.clientip import client_ip


def request(remote="10.0.0.9", forwarded=None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **headers)


@pytest.mark.parametrize("forwarded", [None, "", "203.0.113.7", "198.51.100.1, 203.0.113.7"])
def test_without_trusted_proxies_the_header_is_ignored(settings, forwarded):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request(forwarded=forwarded)) == "10.0.0.9"


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (1, "203.0.113.7", "203.0.113.7"),  # what the ingress appended
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client's own entry on the left is not believed
        (1, " 6.6.6.6 ,203.0.113.7 ", "203.0.113.7"),
        (2, "6.6.6.6, 203.0.113.7, 192.0.2.1", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.9"),  # fewer entries than proxies: the header tells nothing
        (1, "", "10.0.0.9"),
        (1, None, "10.0.0.9"),
        (1, " , ", "10.0.0.9"),
    ],
)
def test_with_trusted_proxies_it_is_the_nth_address_from_the_right(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    assert client_ip(request(forwarded=forwarded)) == expected


def test_the_default_trusts_no_proxy():
    from django.conf import settings

    assert settings.TRUSTED_PROXY_COUNT == 0
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == settings.TRUSTED_PROXY_COUNT
