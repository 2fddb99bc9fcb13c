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
