"""Webhooks end to end: a real upload converted by the real workers, its notify step, and the notify worker sending
signed messages over HTTP to a real receiver on this machine (allowed through OUTBOUND_ALLOWED_NETWORKS), which
verifies each with the standardwebhooks library; and a receiver that is down, then back."""

import pytest
from django.utils import timezone

from conversions.models import Conversion
from notifications.models import WebhookAttempt, WebhookDelivery
from notifications.services import notifications_dispatch
from tests.conversions.api.helpers import upload
from tests.factories import ConversionFactory
from tests.utils import wait_for

pytestmark = [pytest.mark.e2e]
State = WebhookDelivery.State


@pytest.fixture
def reachable(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # in the test process, which saves the URLs
    return settings


def delivered(delivery_filter: dict, timeout: float = 60) -> WebhookDelivery:
    def settled():
        delivery = WebhookDelivery.objects.filter(**delivery_filter).first()
        assert delivery is None or delivery.state != State.FAILED, delivery
        return delivery if delivery is not None and delivery.state == State.DELIVERED else None

    return wait_for(settled, timeout=timeout, message=f"a delivered webhook message ({delivery_filter})")


def test_a_finished_upload_is_told_to_a_receiver_that_answers_500_then_200_and_to_its_own_url(
    live_workers, reachable, api_client, user, media, receiver
):
    receiver.start()
    receiver.statuses = [500]
    endpoint = api_client.post("/api/webhooks/", {"url": receiver.url}, format="json").json()
    job_secret = api_client.post("/api/webhooks/job-secret/").json()["secret"]
    receiver.secrets += [endpoint["secret"], job_secret]

    response = upload(api_client, media("mp4_aac"), webhook_url=f"{receiver.url}?job=1")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    to_endpoint = delivered({"endpoint_id": endpoint["id"], "conversion_id": job_id}, timeout=120)
    to_job = delivered({"target": "job", "conversion_id": job_id})
    requests = receiver.requests()
    # Each request verified by the library; the endpoint's message twice (500, then 200), the job's once.
    assert all(request.payload is not None for request in requests)
    by_id = {}
    for request in requests:
        by_id.setdefault(request.headers["webhook-id"], []).append(request)
    assert [r.answered for r in by_id[f"msg_{to_endpoint.message_id.hex}"]] == [500, 200]
    assert [r.verified_with for r in by_id[f"msg_{to_job.message_id.hex}"]] == [job_secret]
    message = by_id[f"msg_{to_endpoint.message_id.hex}"][-1].payload
    assert message["type"] == "conversion.done" and message["data"]["id"] == job_id
    assert message["data"]["status"] == "done"
    assert message["data"]["download_url"] == f"http://testserver/api/conversions/{job_id}/download/"

    # Both tries are in the endpoint's log, with what the receiver answered.
    log = api_client.get(f"/api/webhooks/{endpoint['id']}/deliveries/").json()["results"]
    [entry] = [entry for entry in log if entry["conversion_id"] == job_id]
    assert [(a["attempt"], a["status_code"]) for a in entry["attempts"]] == [(1, 500), (2, 200)]
    assert entry["attempts"][0]["next_try_at"] is not None and entry["state"] == "delivered"
    assert Conversion.objects.get(pk=job_id).status == Conversion.Status.DONE


def test_a_receiver_that_is_down_gets_the_message_once_it_is_back(live_workers, reachable, api_client, user,
                                                                   receiver):
    endpoint = api_client.post("/api/webhooks/", {"url": receiver.url}, format="json").json()  # not listening
    receiver.secrets.append(endpoint["secret"])
    job = ConversionFactory(owner=user, status=Conversion.Status.FAILED, finished_at=timezone.now(),
                            error_code="no_audio_stream", error_message="The file has no audio track.")
    notifications_dispatch(conversion_id=job.pk)  # the chain's notify step, as the worker runs it

    down = wait_for(lambda: WebhookAttempt.objects.filter(delivery__endpoint_id=endpoint["id"]).first(),
                    timeout=60, message="a first try, refused")
    wait_for(lambda: WebhookAttempt.objects.get(pk=down.pk).finished_at, timeout=30, message="the try to end")
    assert WebhookAttempt.objects.get(pk=down.pk).status_code is None
    receiver.start()

    sent = delivered({"endpoint_id": endpoint["id"]})
    [request] = receiver.requests()
    assert request.payload["type"] == "conversion.failed" and request.answered == 200
    assert request.payload["data"]["error"]["code"] == "no_audio_stream"
    tries = list(WebhookAttempt.objects.filter(delivery=sent).order_by("number"))
    assert tries[0].error.startswith("The server at 127.0.0.1 refused the connection") and tries[-1].status_code == 200
