"""The webhooks API, /api/webhooks/: endpoints made, listed, changed and deleted by their owner only, the secret shown
once, the delivery log and replaying a message; and the per-job webhook_url of an upload."""

import pytest
from django.utils import timezone

from notifications import webhooks
from notifications.models import JobWebhookSecret, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.factories import ConversionFactory

URL = "/api/webhooks/"
LOOPBACK = ["127.0.0.1/32"]


@pytest.fixture
def reachable(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = LOOPBACK
    return settings


@pytest.fixture
def queued(monkeypatch):
    ids = []
    monkeypatch.setattr(webhooks, "webhook_delivery_enqueue", lambda delivery: ids.append(delivery.pk))
    return ids


def make(client, **fields):
    return client.post(URL, {"url": "http://127.0.0.1:9/hook", **fields}, format="json")


@pytest.mark.django_db
def test_a_private_address_is_refused_on_the_defaults(api_client):
    response = make(api_client)
    assert response.status_code == 400
    assert response.json() == {
        "url": ["The URL leads to 127.0.0.1, a loopback address, which the service may not reach."]
    }
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_an_endpoint_is_made_with_its_secret_shown_once(api_client, reachable):
    made = make(api_client)
    assert made.status_code == 201
    body = made.json()
    assert body["secret"].startswith("whsec_") and body["secret"] == WebhookEndpoint.objects.get().secret
    assert body["events"] == ["conversion.done", "conversion.failed"] and body["active"] is True
    listed = api_client.get(URL).json()
    assert [endpoint["id"] for endpoint in listed] == [body["id"]]
    assert "secret" not in listed[0] and "secret" not in api_client.get(f"{URL}{body['id']}/").json()

    rotated = api_client.post(f"{URL}{body['id']}/secret/")
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (body["secret"], "")


@pytest.mark.django_db
@pytest.mark.parametrize("fields, field", [
    ({"events": ["conversion.started"]}, "events"),
    ({"events": []}, "events"),
    ({"url": "ftp://127.0.0.1/hook"}, "url"),
    ({"secret": "whsec_mine"}, "secret"),  # not a field: refused, named
])
def test_a_bad_field_is_refused_naming_it(api_client, reachable, fields, field):
    response = make(api_client, **fields)
    assert response.status_code == 400 and field in response.json()


@pytest.mark.django_db
def test_an_endpoint_is_changed_and_deleted(api_client, reachable):
    endpoint = make(api_client).json()
    detail = f"{URL}{endpoint['id']}/"
    changed = api_client.patch(detail, {"events": ["conversion.failed"], "active": False}, format="json")
    assert changed.status_code == 200
    assert changed.json()["events"] == ["conversion.failed"]
    assert (changed.json()["active"], changed.json()["disabled_reason"]) == (False, "owner")
    enabled = api_client.put(detail, {"url": "http://127.0.0.1:10/hook", "active": True}, format="json").json()
    assert (enabled["url"], enabled["active"], enabled["disabled_reason"]) == ("http://127.0.0.1:10/hook", True, "")
    reachable.OUTBOUND_ALLOWED_NETWORKS = []
    assert api_client.patch(detail, {"url": "http://127.0.0.1:11/hook"}, format="json").status_code == 400
    assert api_client.delete(detail).status_code == 204
    assert api_client.get(detail).status_code == 404


@pytest.mark.django_db
def test_another_users_endpoint_answers_404_everywhere(api_client, other_client, reachable, other_user):
    endpoint, _ = webhooks.webhook_endpoint_create(owner=other_user, url="http://127.0.0.1:9/theirs")
    delivery = WebhookDelivery.objects.create(
        owner=other_user, endpoint=endpoint, target=f"endpoint:{endpoint.pk}",
        conversion_id=ConversionFactory(owner=other_user).pk, attempt=1, event="conversion.done", body="{}",
    )
    base = f"{URL}{endpoint.pk}/"
    assert api_client.get(base).status_code == 404
    assert api_client.patch(base, {"active": False}, format="json").status_code == 404
    assert api_client.delete(base).status_code == 404
    assert api_client.post(f"{base}secret/").status_code == 404
    assert api_client.get(f"{base}deliveries/").status_code == 404
    assert api_client.post(f"{base}deliveries/{delivery.pk}/redeliver/").status_code == 404
    assert api_client.get(f"{URL}not-an-id/").status_code == 404
    assert api_client.get(URL).json() == []
    assert other_client.get(base).status_code == 200 and WebhookEndpoint.objects.get().active


@pytest.mark.django_db
def test_the_delivery_log_shows_every_try_and_a_message_is_replayed(api_client, reachable, user, queued):
    endpoint, _ = webhooks.webhook_endpoint_create(owner=user, url="http://127.0.0.1:9/hook")
    job = ConversionFactory(owner=user, status="done", finished_at=timezone.now())
    [delivery] = webhooks.webhook_deliveries_create(conversion=job)
    started = timezone.now()
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=started, finished_at=started,
                                  status_code=500, duration_ms=12, error="The server at 127.0.0.1 answered 500.",
                                  next_try_at=started)
    WebhookAttempt.objects.create(delivery=delivery, number=2, started_at=started, finished_at=started,
                                  status_code=200, duration_ms=8)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state="delivered", tries=2, delivered_at=started)

    log = api_client.get(f"{URL}{endpoint.pk}/deliveries/").json()
    assert log["count"] == 1
    [entry] = log["results"]
    assert entry["event"] == "conversion.done" and entry["conversion_id"] == str(job.pk)
    assert entry["webhook_id"] == f"msg_{delivery.message_id.hex}" and entry["state"] == "delivered"
    assert [(a["attempt"], a["status_code"], a["duration_ms"], a["next_try_at"] is None)
            for a in entry["attempts"]] == [(1, 500, 12, False), (2, 200, 8, True)]
    assert entry["attempts"][0]["error"] == "The server at 127.0.0.1 answered 500."

    replayed = api_client.post(f"{URL}{endpoint.pk}/deliveries/{delivery.pk}/redeliver/")
    assert replayed.status_code == 202 and replayed.json()["state"] == "pending"
    assert queued[-1] == delivery.pk
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state="claimed", claimed_at=timezone.now())
    busy = api_client.post(f"{URL}{endpoint.pk}/deliveries/{delivery.pk}/redeliver/")
    assert busy.status_code == 409 and busy.json()["code"] == "invalid_state"
    assert api_client.post(f"{URL}{endpoint.pk}/deliveries/999999/redeliver/").status_code == 404


@pytest.mark.django_db
def test_the_jobs_webhook_secret_is_shown_when_made_or_rotated(api_client, user):
    first = api_client.post(f"{URL}job-secret/").json()["secret"]
    assert first.startswith("whsec_") and JobWebhookSecret.objects.get(owner=user).secret == first
    second = api_client.post(f"{URL}job-secret/").json()["secret"]
    stored = JobWebhookSecret.objects.get(owner=user)
    assert second != first and (stored.secret, stored.previous_secret) == (second, first)


@pytest.mark.django_db
def test_the_api_needs_a_sign_in(client):
    assert client.get(URL).status_code == 401
    assert client.post(f"{URL}job-secret/").status_code == 401
