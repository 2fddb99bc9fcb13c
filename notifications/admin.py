from django.contrib import admin

from .models import Delivery


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
