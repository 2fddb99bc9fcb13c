"""The outbound guard (mp3converter/outbound.py): every refused range in both families, the allowlist, URLs, and DNS
rebinding (the connection goes to the address that was checked, never to a second answer)."""

import pytest
import urllib3

from conversions.services.fetching import download
from mp3converter import outbound
from mp3converter.outbound import ForbiddenAddress, OutboundFailed, address_problem, check_url, url_problem

REFUSED = [
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.20.30.40", "private"),
    ("100.64.0.1", "carrier-grade NAT (CGNAT)"),
    ("100.127.255.254", "carrier-grade NAT (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.1.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.25", "documentation"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("64:ff9b:1::1", "private"),
    ("100::1", "reserved"),
    ("2001:0:4136:e378::1", "reserved"),  # Teredo
    ("2001:db8::1", "documentation"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "reserved"),
    ("ff02::1", "multicast"),
    ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
    # IPv6 carrying a refused IPv4 address
    ("::ffff:127.0.0.1", "loopback (embedded in IPv6)"),
    ("::ffff:10.0.0.1", "private (embedded in IPv6)"),
    ("2002:7f00:1::1", "loopback (embedded in IPv6)"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::", "cloud metadata (embedded in IPv6)"),  # 6to4 of 169.254.169.254
    ("64:ff9b::a00:1", "private (embedded in IPv6)"),  # NAT64 of 10.0.0.1
    # Cloud metadata services
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("168.63.129.16", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("::ffff:169.254.169.254", "cloud metadata (embedded in IPv6)"),
]
PUBLIC = ["8.8.8.8", "93.184.215.14", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
          "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_every_refused_range_in_both_families(address, reason, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    assert address_problem(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    assert address_problem(address) is None


def test_the_allowlist_opens_exactly_its_networks_and_never_metadata(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32", "10.1.0.0/16", "fd00::/8", "169.254.0.0/16"]
    assert address_problem("127.0.0.1") is None
    assert address_problem("::ffff:127.0.0.1") is None
    assert address_problem("127.0.0.2") == "loopback"
    assert address_problem("10.1.200.3") is None and address_problem("10.2.0.1") == "private"
    assert address_problem("fd12::1") is None and address_problem("fc00::1") == "private"
    assert address_problem("169.254.1.1") is None
    assert address_problem("169.254.169.254") == address_problem("fd00:ec2::254") == "cloud metadata"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/a.mp4", "Only http and https URLs can be imported."),
        ("file:///etc/passwd", "Only http and https URLs can be imported."),
        ("gopher://example.com/", "Only http and https URLs can be imported."),
        ("http:///a.mp4", "The URL names no host."),
        ("http://user:secret@example.com/a.mp4", "A URL with a user name or password cannot be imported."),
        ("http://example.com:99999/a.mp4", "This is not a valid URL."),
        ("http://example.com/" + "a" * 2100, "The URL is longer than 2048 characters."),
        ("https://example.com/a.mp4", None),
        ("HTTP://Example.com:8080/a%20b.mp4?x=1", None),
    ],
)
def test_urls_are_checked_before_any_lookup(url, problem):
    assert url_problem(url) == problem


def test_every_answer_of_the_resolver_must_pass(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(ForbiddenAddress, match=r"media\.example \(10\.0\.0\.7\), a private address"):
        check_url("http://media.example/a.mp4", resolve=lambda host, port: ["93.184.215.14", "10.0.0.7"])
    target = check_url("https://media.example:8443/a.mp4?x=1", resolve=lambda host, port: ["93.184.215.14"])
    assert (target.address, target.host, target.port, target.path) == ("93.184.215.14", "media.example", 8443, "/a.mp4?x=1")
    assert target.host_header == "media.example:8443"


def test_a_name_that_does_not_resolve_fails_the_fetch():
    def nowhere(host, port):
        raise OSError("Name or service not known")

    with pytest.raises(OutboundFailed, match="could not be resolved"):
        check_url("http://nowhere.example/a.mp4", resolve=nowhere)


def test_https_connects_to_the_checked_address_and_verifies_the_name():
    target = check_url("https://media.example/a.mp4", resolve=lambda host, port: ["93.184.215.14"])
    pool = outbound.connection_pool(target, timeout=urllib3.Timeout(connect=1, read=1))
    assert isinstance(pool, urllib3.HTTPSConnectionPool)
    assert (pool.host, pool.port) == ("93.184.215.14", 443)
    assert pool.conn_kw["server_hostname"] == "media.example"  # SNI
    assert pool.assert_hostname == "media.example" and pool.cert_reqs == "CERT_REQUIRED"


class Rebinding:
    """A resolver that answers the allowed address first and a private one on every later lookup."""

    def __init__(self, first: str, then: str):
        self.answers, self.calls = [first], []
        self.then = then

    def __call__(self, host, port):
        self.calls.append(host)
        return [self.answers.pop(0)] if self.answers else [self.then]


def test_dns_rebinding_never_reaches_the_second_answer(remote_server, media, tmp_path, settings):
    """The name is resolved once per hop; the connection goes to that checked address (the local server proves it got
    the request, with the name in its Host header), never to the private address a second lookup would give."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.FETCH_CONNECT_TIMEOUT = settings.FETCH_READ_TIMEOUT = 5
    remote_server.serve("rebind.mp4", media("mp4_aac"))
    resolver = Rebinding("127.0.0.1", then="10.255.255.1")
    url = remote_server.url("/files/rebind.mp4", host="rebinding.example")

    downloaded = download(url, tmp_path / "source", max_bytes=10**7, resolve=resolver)

    assert downloaded.size == media("mp4_aac").stat().st_size == (tmp_path / "source").stat().st_size
    assert resolver.calls == ["rebinding.example"]
    assert ("/files/rebind.mp4", f"rebinding.example:{remote_server.port}") in remote_server.requests


def test_a_redirect_is_checked_again_with_a_new_lookup(remote_server, tmp_path, settings):
    """A redirect to another name is resolved and checked on its own: its private answer is refused."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    answers = {"start.example": ["127.0.0.1"], "inside.example": ["192.168.0.10"]}
    redirect = remote_server.url("/redirect-to?url=http://inside.example/admin", host="start.example")
    with pytest.raises(ForbiddenAddress, match=r"inside\.example \(192\.168\.0\.10\), a private address"):
        download(redirect, tmp_path / "source", max_bytes=10**7, resolve=lambda host, port: answers[host])
    assert not (tmp_path / "source").exists()
