"""The client address of a request: the one function every throttle and lockout keys on.

`X-Forwarded-For` is written by whoever the request passed through, the client included, so only the entries our
own proxies appended can be believed. With `TRUSTED_PROXY_COUNT=N` the client is the N-th address from the right
(each trusted proxy appends the address it saw); with 0 (no proxy, `make run`) it is the socket's peer and the
header is ignored. A client can add entries on the left but never change the ones our proxies wrote.
"""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address of the client behind `TRUSTED_PROXY_COUNT` trusted proxies (REMOTE_ADDR when it is 0)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < proxies:
        # Fewer entries than proxies: the request did not come through all of them, so the header tells nothing.
        return remote
    return forwarded[-proxies]
