"""The webhooks API, under /api/webhooks/: the signed-in user's endpoints (make, list, change, delete, rotate the
secret), each endpoint's delivery log and replaying a message, and the secret of the jobs' own webhooks. Another
user's endpoint or message is a 404, as an unknown one."""

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from .selectors import webhook_delivery_get, webhook_delivery_list, webhook_endpoint_get, webhook_endpoint_list
from .serializers import (
    WebhookDeliveryOutputSerializer,
    WebhookEndpointCreatedOutputSerializer,
    WebhookEndpointInputSerializer,
    WebhookEndpointOutputSerializer,
    WebhookSecretOutputSerializer,
)
from .webhooks import (
    job_webhook_secret_rotate,
    webhook_delivery_redeliver,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

NOT_SIGNED_IN = OpenApiResponse(description="Not signed in, or the credential was refused.")
NO_ENDPOINT = OpenApiResponse(description="None of your endpoints has this id (another user's included).")
BAD_ENDPOINT = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="A bad url (not http or https, credentials in it, a host that does not resolve, or an address the "
    "service may not reach: loopback, private, …), an unknown event, or a field that is not one of these: "
    "{field: [messages]}.",
)
ENDPOINT_ID = OpenApiParameter(
    "endpoint_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The endpoint's id."
)


def _endpoint_or_404(request, endpoint_id):
    endpoint = webhook_endpoint_get(user=request.user, endpoint_id=endpoint_id)
    if endpoint is None:
        raise Http404("No webhook endpoint with this id.")
    return endpoint


def _changes(serializer) -> dict:
    data = dict(serializer.validated_data)
    if "events" in data:
        data["events"] = list(data["events"])
    return data


class WebhookEndpointListCreateView(APIView):
    name = "Webhook endpoints"

    @extend_schema(responses={200: WebhookEndpointOutputSerializer(many=True), 401: NOT_SIGNED_IN})
    def get(self, request):
        """Your webhook endpoints, newest first: never their secrets."""
        return Response(WebhookEndpointOutputSerializer(webhook_endpoint_list(user=request.user), many=True).data)

    @extend_schema(
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointCreatedOutputSerializer, 400: BAD_ENDPOINT, 401: NOT_SIGNED_IN},
    )
    def post(self, request):
        """Make an endpoint. The answer carries its signing secret, `whsec_…`, this once."""
        serializer = WebhookEndpointInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_create(owner=request.user, **_changes(serializer))
        body = WebhookEndpointCreatedOutputSerializer(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(APIView):
    name = "Webhook endpoint"

    @extend_schema(parameters=[ENDPOINT_ID],
                   responses={200: WebhookEndpointOutputSerializer, 401: NOT_SIGNED_IN, 404: NO_ENDPOINT})
    def get(self, request, endpoint_id):
        return Response(WebhookEndpointOutputSerializer(_endpoint_or_404(request, endpoint_id)).data)

    @extend_schema(
        parameters=[ENDPOINT_ID], request=WebhookEndpointInputSerializer,
        responses={200: WebhookEndpointOutputSerializer, 400: BAD_ENDPOINT, 401: NOT_SIGNED_IN, 404: NO_ENDPOINT},
    )
    def patch(self, request, endpoint_id):
        """Change the url, the events or active (true enables an endpoint the service disabled)."""
        return self._update(request, endpoint_id, partial=True)

    @extend_schema(
        parameters=[ENDPOINT_ID], request=WebhookEndpointInputSerializer,
        responses={200: WebhookEndpointOutputSerializer, 400: BAD_ENDPOINT, 401: NOT_SIGNED_IN, 404: NO_ENDPOINT},
    )
    def put(self, request, endpoint_id):
        """Replace the url, and the events and active if given (left out: as they are)."""
        return self._update(request, endpoint_id, partial=False)

    def _update(self, request, endpoint_id, *, partial: bool):
        endpoint = _endpoint_or_404(request, endpoint_id)
        serializer = WebhookEndpointInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(endpoint=endpoint, **_changes(serializer))
        return Response(WebhookEndpointOutputSerializer(endpoint).data)

    @extend_schema(parameters=[ENDPOINT_ID], responses={204: None, 401: NOT_SIGNED_IN, 404: NO_ENDPOINT})
    def delete(self, request, endpoint_id):
        """Delete the endpoint and its delivery log."""
        webhook_endpoint_delete(endpoint=_endpoint_or_404(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointSecretView(APIView):
    name = "Rotate an endpoint's secret"

    @extend_schema(parameters=[ENDPOINT_ID], request=None,
                   responses={200: WebhookSecretOutputSerializer, 401: NOT_SIGNED_IN, 404: NO_ENDPOINT})
    def post(self, request, endpoint_id):
        """A new signing secret, shown this once. The previous one signs too, beside it, for 24 hours."""
        secret = webhook_endpoint_rotate_secret(endpoint=_endpoint_or_404(request, endpoint_id))
        return Response(WebhookSecretOutputSerializer({}, context={"secret": secret}).data)


class JobWebhookSecretView(APIView):
    name = "Rotate the jobs' webhook secret"

    @extend_schema(request=None, responses={200: WebhookSecretOutputSerializer, 401: NOT_SIGNED_IN})
    def post(self, request):
        """The secret that signs the webhooks of your jobs' own webhook_url: a new one, shown this once (the previous
        one signs too, beside it, for 24 hours)."""
        secret = job_webhook_secret_rotate(owner=request.user)
        return Response(WebhookSecretOutputSerializer({}, context={"secret": secret}).data)


class WebhookDeliveryListView(GenericAPIView):
    name = "Webhook deliveries"
    serializer_class = WebhookDeliveryOutputSerializer

    @extend_schema(parameters=[ENDPOINT_ID], responses={
        200: WebhookDeliveryOutputSerializer(many=True), 401: NOT_SIGNED_IN, 404: NO_ENDPOINT,
    })
    def get(self, request, endpoint_id):
        """The endpoint's messages, newest first, paginated, each with every try: status code, duration, error and
        when the next is due."""
        endpoint = _endpoint_or_404(request, endpoint_id)
        page = self.paginate_queryset(webhook_delivery_list(endpoint=endpoint))
        return self.get_paginated_response(WebhookDeliveryOutputSerializer(page, many=True).data)


class WebhookRedeliverView(APIView):
    name = "Redeliver"

    @extend_schema(
        parameters=[ENDPOINT_ID, OpenApiParameter("delivery_id", int, OpenApiParameter.PATH)],
        request=None,
        responses={
            202: WebhookDeliveryOutputSerializer,
            401: NOT_SIGNED_IN,
            404: OpenApiResponse(description="No such endpoint of yours, or no such message of it."),
            409: OpenApiResponse(
                description="It is being sent right now, or the endpoint is disabled (code invalid_state)."
            ),
        },
    )
    def post(self, request, endpoint_id, delivery_id):
        """Send the message again now, with the same webhook-id and body, and a fresh retry schedule."""
        delivery = webhook_delivery_get(endpoint=_endpoint_or_404(request, endpoint_id), delivery_id=delivery_id)
        if delivery is None:
            raise Http404("No delivery with this id.")
        delivery = webhook_delivery_redeliver(delivery=delivery)
        return Response(WebhookDeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
