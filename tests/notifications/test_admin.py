"""The deliveries in the Django admin: listed for operators, read-only."""

import pytest
from django.test import Client

from tests.factories import DeliveryFactory, UserFactory

CHANGELIST = "/admin/notifications/delivery/"


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_deliveries_are_listed_filtered_and_searched_by_job(admin_client):
    sent = DeliveryFactory()
    failed = DeliveryFactory(state="failed", delivered_at=None, error="ConnectionRefusedError(111)")
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == {sent, failed}
    assert list(admin_client.get(CHANGELIST + "?state__exact=failed").context["cl"].result_list) == [failed]
    assert list(admin_client.get(CHANGELIST + f"?q={sent.conversion_id}").context["cl"].result_list) == [sent]


def test_a_delivery_can_be_read_but_not_added_or_changed(admin_client):
    failed = DeliveryFactory(state="failed", delivered_at=None, error="ConnectionRefusedError(111)")
    page = admin_client.get(f"{CHANGELIST}{failed.pk}/change/")
    assert page.status_code == 200
    assert "ConnectionRefusedError(111)" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.post(f"{CHANGELIST}{failed.pk}/change/", {"state": "delivered"}).status_code == 403


def test_resend_email_is_a_change_action():
    from notifications.admin import resend_email

    # Django offers and runs it only for users with the change permission of the model admin it is listed on;
    # tests/conversions/test_admin.py checks that on the conversions' changelist.
    assert resend_email.allowed_permissions == ["change"]


def test_webhook_endpoints_and_messages_are_shown_but_never_a_secret(admin_client, settings):
    from notifications.models import WebhookAttempt, WebhookDelivery
    from notifications.webhooks import job_webhook_secret_rotate, webhook_endpoint_create

    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    owner = UserFactory()
    endpoint, secret = webhook_endpoint_create(owner=owner, url="http://127.0.0.1:9/hook")
    job_secret = job_webhook_secret_rotate(owner=owner)
    delivery = WebhookDelivery.objects.create(
        owner=owner, endpoint=endpoint, target=f"endpoint:{endpoint.pk}", conversion_id=endpoint.pk, attempt=1,
        event="conversion.done", body='{"type": "conversion.done"}',
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=503, error="answered 503")
    pages = [
        admin_client.get("/admin/notifications/webhookendpoint/"),
        admin_client.get(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/"),
        admin_client.get("/admin/notifications/webhookdelivery/"),
        admin_client.get(f"/admin/notifications/webhookdelivery/{delivery.pk}/change/"),
    ]
    assert [page.status_code for page in pages] == [200, 200, 200, 200]
    text = "".join(page.content.decode() for page in pages)
    assert endpoint.url in text and "answered 503" in text
    assert secret not in text and job_secret not in text and "whsec_" not in text
    assert admin_client.get("/admin/notifications/jobwebhooksecret/").status_code == 404
