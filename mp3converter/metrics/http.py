"""Requests timed by a middleware of our own: one histogram (method, view, status) and the requests in flight. The
same middleware answers web's `/metrics`.

django-prometheus's middleware pair observes a dozen metrics per request, about 50 µs in multiprocess mode on the
test machine; the job-status poll is the hot path (`make bench`, P6), so this one observes two, with the labelled
histogram kept per label set instead of looked up through prometheus_client's lock each time (a few µs).
"""

from time import perf_counter

from .exposition import PATH, metrics_response
from .instruments import http_request_duration, http_requests_in_flight

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A request no URL pattern matched (a 404 before any view): one label value, whatever its path.
UNMATCHED = "<unmatched>"


def view_label(request) -> str:
    """The URL pattern's name (`conversion-detail`), or its route when it has none; never the path, which would make a
    label value per job id."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.view_name or match.route or UNMATCHED


class MetricsMiddleware:
    """Just after the probes in MIDDLEWARE (they are not counted), so it times every other middleware and the view.

    `/metrics` is answered here, like the probes before host validation and the HTTPS redirect: Prometheus scrapes each
    pod by its address over plain HTTP, as the kubelet probes it. METRICS_TOKEN guards it (exposition.py).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._children = {}  # (method, view, status) -> the histogram's child for those labels

    def __call__(self, request):
        if request.path_info == PATH and request.method in ("GET", "HEAD"):
            return metrics_response(request)
        start = perf_counter()
        http_requests_in_flight.inc()
        try:
            response = self.get_response(request)
        finally:
            http_requests_in_flight.dec()
        method = request.method if request.method in METHODS else "other"
        key = (method, view_label(request), response.status_code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = http_request_duration.labels(key[0], key[1], str(key[2]))
        child.observe(perf_counter() - start)
        return response
