"""The requests' middleware: labels that stay few whatever the requests, and a cost of a few microseconds."""

import time

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory

from mp3converter.metrics import instruments
from mp3converter.metrics.http import UNMATCHED, MetricsMiddleware
from tests.metrics.helpers import samples, value

DURATION = "mp3converter_http_request_duration_seconds_count"


def scrape(settings) -> dict:
    return samples(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}").content.decode())


@pytest.mark.django_db
def test_requests_are_labelled_by_view_name_never_by_path(settings, api_client):
    before = scrape(settings)
    for _ in range(3):
        assert api_client.get("/api/conversions/00000000-0000-0000-0000-000000000000/").status_code == 404
    Client().get("/no/such/page/12345")
    Client().generic("BREW", "/api/conversions/")
    after = scrape(settings)

    def moved(**labels):
        return value(after, DURATION, **labels) - value(before, DURATION, **labels)

    assert moved(method="GET", view="conversion-detail", status="404") == 3
    assert moved(method="GET", view=UNMATCHED, status="404") == 1
    assert moved(method="other", view="conversion-list", status="401") == 1
    paths = [labels for (name, labels) in after if name == DURATION and any("/" in v for _, v in labels)]
    assert paths == []


def test_the_in_flight_gauge_counts_a_request_while_it_is_served():
    seen = []

    def view(request):
        seen.append(instruments.http_requests_in_flight._value.get())
        return HttpResponse()

    before = instruments.http_requests_in_flight._value.get()
    MetricsMiddleware(view)(RequestFactory().get("/"))
    assert seen == [before + 1]
    assert instruments.http_requests_in_flight._value.get() == before


def test_the_middleware_costs_a_few_microseconds_per_request():
    """What it adds to a request, in CPU time (a shared machine's load stretches wall time, not this much): a few µs.
    django-prometheus's middleware pair costs about 50 µs here, which this guards against creeping back."""
    requests = [RequestFactory().get("/api/conversions/") for _ in range(2000)]

    def bare(request):
        return HttpResponse()

    timed = MetricsMiddleware(bare)

    def cpu_seconds(handler) -> float:
        start = time.process_time()
        for request in requests:
            handler(request)
        return time.process_time() - start

    cpu_seconds(timed)  # the labelled histogram's child is made once, outside the measurement
    added = min(cpu_seconds(timed) - cpu_seconds(bare) for _ in range(5)) / len(requests)
    assert added < 25e-6, f"the middleware adds {added * 1e6:.1f} µs per request"
