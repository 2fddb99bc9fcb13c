"""Polling a job cheaply: an ETag computed from what the answer shows, and If-None-Match answered with 304.

The tag is weak (`W/"…"`): it names the data, not the exact bytes (JSON can be indented on request, RFC 9110
section 8.8.1). If-None-Match compares weakly anyway (section 13.1.2), so a weak tag is all polling needs.
"""

import hashlib
import json

from django.http import HttpRequest
from django.utils.http import parse_etags
from rest_framework.utils.encoders import JSONEncoder

# A client may keep the answer, but must ask again each time (and gets 304 while nothing changed); no shared cache
# may keep it: it is one user's job.
POLLING_CACHE_CONTROL = "private, no-cache"


def representation_etag(data) -> str:
    """A weak ETag of an API answer's data: it changes whenever any value in it does."""
    canonical = json.dumps(data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f'W/"{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"'


def _opaque(etag: str) -> str:
    return etag[2:] if etag.startswith("W/") else etag


def not_modified(request: HttpRequest, etag: str) -> bool:
    """Whether the request's If-None-Match names `etag` (weak comparison), or is `*`."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    tags = parse_etags(header)
    return tags == ["*"] or _opaque(etag) in {_opaque(tag) for tag in tags}
