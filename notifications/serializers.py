"""The webhooks API's serializers: input ones parse, output ones only shape. A secret is in an answer only when it
was just made (in the context): never in a listing or an endpoint's own answer."""

from rest_framework import serializers

from conversions.api.serializers import KnownFieldsOnly
from mp3converter import outbound

from .models import Events, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .webhook_sending import message_id


class WebhookEndpointInputSerializer(KnownFieldsOnly, serializers.Serializer):
    url = serializers.CharField(
        max_length=outbound.MAX_URL_LENGTH, trim_whitespace=True,
        help_text="Where the signed POSTs go: an http or https URL of a public address (OUTBOUND_ALLOWED_NETWORKS adds "
        "others). Checked when saved, and again for each message.",
    )
    events = serializers.MultipleChoiceField(
        choices=Events.choices, required=False, allow_empty=False,
        help_text="The events to send. Default: all of them.",
    )
    active = serializers.BooleanField(
        required=False, help_text="false: nothing is sent to it. true enables an endpoint the service disabled."
    )


class WebhookEndpointOutputSerializer(serializers.ModelSerializer):
    """An endpoint as its owner sees it: never its secret."""

    events = serializers.ListField(child=serializers.ChoiceField(choices=Events.choices), read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "active", "disabled_reason", "failing_since", "created_at", "updated_at"]
        read_only_fields = fields
        extra_kwargs = {
            "disabled_reason": {
                "help_text": "Why it is not active: owner, gone (it answered 410), failing (its deliveries failed "
                "for WEBHOOK_DISABLE_AFTER_HOURS); empty while active."
            },
            "failing_since": {"help_text": "When its current run of failed tries began; null: none."},
        }


class SecretOutputMixin(serializers.Serializer):
    secret = serializers.SerializerMethodField(
        help_text="The signing secret (whsec_…): shown only in this answer, so keep it now. Verify each message "
        "with it (Standard Webhooks)."
    )

    def get_secret(self, obj) -> str:
        return self.context["secret"]


class WebhookEndpointCreatedOutputSerializer(SecretOutputMixin, WebhookEndpointOutputSerializer):
    """An endpoint just made, with its secret: the only answer that carries it."""

    class Meta(WebhookEndpointOutputSerializer.Meta):
        fields = [*WebhookEndpointOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookSecretOutputSerializer(SecretOutputMixin):
    """A secret just rotated (an endpoint's, or the account's for its jobs' own webhooks)."""


class WebhookAttemptOutputSerializer(serializers.ModelSerializer):
    attempt = serializers.IntegerField(source="number", help_text="1 for the first try, 2 for the next, …")

    class Meta:
        model = WebhookAttempt
        fields = ["attempt", "started_at", "status_code", "duration_ms", "error", "next_try_at"]
        read_only_fields = fields
        extra_kwargs = {
            "status_code": {"help_text": "The receiver's answer; null: none (unreachable, timed out, refused)."},
            "error": {"help_text": "Why it failed, as a sentence; empty for a success."},
            "next_try_at": {"help_text": "When the next try is due; null: none is (delivered or given up)."},
        }


class WebhookDeliveryOutputSerializer(serializers.ModelSerializer):
    webhook_id = serializers.SerializerMethodField(help_text="The message's webhook-id header, the same on every try.")
    attempts = WebhookAttemptOutputSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook_id", "event", "conversion_id", "state", "tries", "next_try_at", "delivered_at",
                  "created_at", "attempts"]
        read_only_fields = fields

    def get_webhook_id(self, delivery) -> str:
        return message_id(delivery)
