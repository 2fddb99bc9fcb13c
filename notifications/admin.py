from django.contrib import admin

from conversions.models import Conversion

from .models import Delivery
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
