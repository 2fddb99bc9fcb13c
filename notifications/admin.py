from django.contrib import admin

from conversions.models import Conversion

from .models import Delivery, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .services import notification_resend


# Offered (and run) only for users who may change conversions: has_change_permission of the ConversionAdmin.
@admin.action(description="Resend the notification email", permissions=["change"])
def resend_email(modeladmin, request, queryset):
    """An action for the conversions' changelist: email the owners of the selected finished jobs again."""
    finished = queryset.filter(status__in=Conversion.FINISHED)
    for conversion in finished:
        notification_resend(conversion=conversion, channel="email")
    modeladmin.message_user(request, f"{finished.count()} email(s) queued.")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Every notification sent or tried, for operators: read-only (deliveries are made by the notify step)."""

    list_display = ["conversion", "channel", "attempt", "state", "tries", "delivered_at", "created_at"]
    list_filter = ["channel", "state", "created_at"]
    search_fields = ["=conversion__id", "conversion__owner__email"]
    list_select_related = ["conversion"]
    readonly_fields = [
        "conversion", "channel", "attempt", "state", "tries", "claimed_at", "delivered_at", "error", "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Users' webhook endpoints, read-only: their owners manage them through the API. Never a secret."""

    list_display = ["url", "owner", "active", "disabled_reason", "failing_since", "created_at"]
    list_filter = ["active", "disabled_reason", "created_at"]
    search_fields = ["url", "owner__email", "=id"]
    list_select_related = ["owner"]
    fields = ["id", "owner", "url", "events", "active", "disabled_reason", "failing_since", "created_at", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "started_at", "finished_at", "status_code", "duration_ms", "error", "next_try_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every webhook message and each try at sending it, for operators: read-only."""

    list_display = ["event", "conversion_id", "target", "state", "tries", "next_try_at", "delivered_at", "created_at"]
    list_filter = ["state", "event", "created_at"]
    search_fields = ["=conversion_id", "owner__email", "url"]
    fields = [
        "message_id", "owner", "endpoint", "url", "target", "conversion_id", "attempt", "event", "state", "tries",
        "failures", "next_try_at", "claimed_at", "delivered_at", "created_at", "updated_at", "body",
    ]
    readonly_fields = fields
    inlines = [WebhookAttemptInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
