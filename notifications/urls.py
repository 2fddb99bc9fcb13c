"""The webhooks API's routes, under /api/webhooks/ (notifications/views.py)."""

from django.urls import path

from .views import (
    JobWebhookSecretView,
    WebhookDeliveryListView,
    WebhookEndpointDetailView,
    WebhookEndpointListCreateView,
    WebhookEndpointSecretView,
    WebhookRedeliverView,
)

urlpatterns = [
    path("", WebhookEndpointListCreateView.as_view(), name="webhook-list"),
    # Before the endpoints' routes: "job-secret" would otherwise be taken for an endpoint's id.
    path("job-secret/", JobWebhookSecretView.as_view(), name="webhook-job-secret"),
    path("<str:endpoint_id>/", WebhookEndpointDetailView.as_view(), name="webhook-detail"),
    path("<str:endpoint_id>/secret/", WebhookEndpointSecretView.as_view(), name="webhook-secret"),
    path("<str:endpoint_id>/deliveries/", WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
    path(
        "<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver/", WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
]
