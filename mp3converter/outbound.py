"""Outbound HTTP made on a user's behalf (URL imports and webhooks): the SSRF guard, and requests that connect only
to the address the guard checked.

- A URL must be http or https, name a host and carry no user name or password.
- The host is resolved once. Every address it resolves to must be public: loopback, private, link-local, CGNAT,
  multicast, reserved, unspecified and documentation ranges are refused, in IPv4 and IPv6, and so are IPv6 addresses
  that embed a refused IPv4 one (IPv4-mapped, 6to4, NAT64). Cloud metadata addresses are refused always.
- `OUTBOUND_ALLOWED_NETWORKS` (CIDRs) is the one exception: an address in it may be reached.
- The connection goes to the checked address itself, not to the name again, so a DNS answer that changes between the
  check and the connection (DNS rebinding) cannot lead anywhere else. The Host header keeps the name, and HTTPS sends
  the name as SNI and checks the certificate against it.
- Redirects are followed by hand, at most MAX_REDIRECTS, each one checked again like the first URL (a GET); a POST
  (`post`, webhooks) follows none.

No Django model in here: only the settings and the error model.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

from .errors import ErrorCode, ServiceError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

SCHEMES = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
MAX_URL_LENGTH = 2048
USER_AGENT = "mp3converter (URL import)"


class ForbiddenAddress(ServiceError):
    """The URL (or a redirect) leads to an address the service may not reach."""

    code = ErrorCode.FORBIDDEN_ADDRESS
    message = "This URL leads to an address the service may not reach: only public internet addresses are allowed."


class OutboundFailed(ServiceError):
    """The remote server could not be reached, or answered with something other than what was asked for."""

    code = ErrorCode.FETCH_FAILED
    message = "The remote server could not be reached."


# Refused ranges, the most specific first, each with the word a message uses for it.
_REFUSED_V4 = [
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # with the broadcast address 255.255.255.255
]
_REFUSED_V6 = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo among them
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved"),  # site-local, deprecated
    ("ff00::/8", "multicast"),
    ("::/8", "reserved"),  # IPv4-compatible and the rest of the reserved block
]
_REFUSED = [(ipaddress.ip_network(cidr), reason) for cidr, reason in _REFUSED_V4 + _REFUSED_V6]
# Cloud metadata services (AWS, GCP, Azure, Oracle, Alibaba, ECS tasks): refused even inside an allowed network, since
# they hand out credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254", "169.254.170.2", "169.254.169.253", "168.63.129.16", "100.100.100.200",
        "fd00:ec2::254", "fd00:ec2::23",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """OUTBOUND_ALLOWED_NETWORKS, parsed (the settings refuse a bad one at start)."""
    return [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in settings.OUTBOUND_ALLOWED_NETWORKS if cidr.strip()]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002:AABB:CCDD::) or NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _SIXTOFOUR:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: str | IPAddress, *, allowed=None) -> str | None:
    """Why the service may not connect to `address` (e.g. "loopback"), or None when it may."""
    address = ipaddress.ip_address(str(address).split("%", 1)[0])  # a scope id (fe80::1%eth0) changes nothing
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    allowed = allowed_networks() if allowed is None else allowed
    if any(address.version == network.version and address in network for network in allowed):
        return None
    if address.version == 6 and (embedded := _embedded_ipv4(address)) is not None:
        problem = address_problem(embedded, allowed=allowed)
        return None if problem is None else f"{problem} (embedded in IPv6)"
    for network, reason in _REFUSED:
        if address.version == network.version and address in network:
            return reason
    return None


def url_problem(url: str, *, use: str = "imported") -> str | None:
    """What makes `url` unusable before any lookup (scheme, host, port, credentials), as a sentence; None if fine.
    `use` says what the URL is for, in the sentence: "imported", "used for webhooks"."""
    if len(url) > MAX_URL_LENGTH:
        return f"The URL is longer than {MAX_URL_LENGTH} characters."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "This is not a valid URL."
    if parts.scheme.lower() not in SCHEMES:
        return f"Only http and https URLs can be {use}."
    if not parts.hostname:
        return "The URL names no host."
    if parts.username is not None or parts.password is not None:
        return f"A URL with a user name or password cannot be {use}."
    if port == 0:
        return "The URL's port is not valid."
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, with the one address it will be fetched from."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # the path and query, as sent in the request line
    address: str  # the checked address the connection goes to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"


def check_url(url: str, *, resolve: Resolver = system_resolve, use: str = "imported") -> Target:
    """Check a URL and resolve its host once; ForbiddenAddress if any address it resolves to is refused,
    OutboundFailed if it cannot be used or resolved."""
    if (problem := url_problem(url, use=use)) is not None:
        raise OutboundFailed(problem)
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    port = parts.port or SCHEMES[scheme]
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise OutboundFailed(f"The host name {host} could not be resolved.", detail=repr(exc)) from exc
    if not addresses:
        raise OutboundFailed(f"The host name {host} could not be resolved.")
    for address in addresses:
        if (problem := address_problem(address)) is not None:
            shown = host if host == address else f"{host} ({address})"
            raise ForbiddenAddress(
                f"The URL leads to {shown}, a {problem} address, which the service may not reach."
            )
    path = parts.path or "/"
    return Target(
        url=url, scheme=scheme, host=host, port=port, path=f"{path}?{parts.query}" if parts.query else path,
        address=addresses[0],
    )


def connection_pool(target: Target, *, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """A pool that connects to the checked address only; HTTPS verifies the certificate against the host name."""
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, maxsize=1, cert_reqs="CERT_REQUIRED",
            server_hostname=target.host, assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)


def failure(exc: Exception, host: str, timeout: urllib3.Timeout) -> OutboundFailed:
    """An urllib3 error as a sentence naming the server."""
    if isinstance(exc, NewConnectionError):  # refused, unreachable (urllib3 makes it a kind of connect timeout)
        message = f"The server at {host} refused the connection, or could not be reached."
    elif isinstance(exc, ConnectTimeoutError):
        message = f"The server at {host} did not accept a connection within {timeout.connect_timeout:g} seconds."
    elif isinstance(exc, ReadTimeoutError):
        message = f"The server at {host} stopped sending for more than {timeout.read_timeout:g} seconds."
    elif isinstance(exc, SSLError):
        message = f"The server at {host} did not prove it is {host} (its TLS certificate was refused)."
    else:
        message = f"The server at {host} could not be reached, or the connection broke."
    return OutboundFailed(message, detail=repr(exc))


def status_failure(host: str, status: int, reason: str = "") -> OutboundFailed:
    """A remote answer that is not the file, as a sentence naming the server and its status."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = reason or "an unknown status"
    return OutboundFailed(f"The server at {host} answered {status} {reason}.")


def open_url(
    url: str, *, timeout: urllib3.Timeout, max_redirects: int = MAX_REDIRECTS, resolve: Resolver = system_resolve,
) -> tuple[urllib3.BaseHTTPResponse, Target]:
    """GET `url` through the guard, following at most `max_redirects` redirects (each checked again). Returns the
    final answer, unread (stream it, then `release_conn()`), and the Target it came from."""
    for _hop in range(max_redirects + 1):
        target = check_url(url, resolve=resolve)
        pool = connection_pool(target, timeout=timeout)
        try:
            response = pool.urlopen(
                "GET", target.path, headers={"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "*/*"},
                redirect=False, retries=False, preload_content=False, assert_same_host=False, release_conn=False,
            )
        except HTTPError as exc:
            raise failure(exc, target.host, timeout) from exc
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            return response, target
        response.close()  # a redirect's body is not read
        pool.close()
        url = urljoin(url, location.strip())
    raise OutboundFailed(f"The server at {target.host} redirected more than {max_redirects} times.")


def post(
    url: str, *, body: bytes, headers: dict[str, str], timeout: urllib3.Timeout, resolve: Resolver = system_resolve,
    user_agent: str = USER_AGENT,
) -> int:
    """POST `body` to `url` through the guard, checked at connect time, and return the answer's status. No redirect
    is followed (a 3xx is an answer like any other) and the answer's body is not read."""
    target = check_url(url, resolve=resolve, use="used for webhooks")
    pool = connection_pool(target, timeout=timeout)
    try:
        response = pool.urlopen(
            "POST", target.path, body=body,
            headers={**headers, "Host": target.host_header, "User-Agent": user_agent},
            redirect=False, retries=False, preload_content=False, assert_same_host=False, release_conn=False,
        )
    except HTTPError as exc:
        pool.close()
        raise failure(exc, target.host, timeout) from exc
    response.close()  # the connection goes with it: nothing more is read
    pool.close()
    return response.status
