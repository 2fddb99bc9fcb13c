from django.contrib import admin, messages

from mp3converter.errors import ConversionExpired, ErrorCode
from notifications.admin import resend_email
from notifications.selectors import notified_at

from .models import Conversion, Track
from .services import conversion_cancel, conversion_retry


def error_label(code: str) -> str:
    try:
        return ErrorCode(code).label
    except ValueError:  # a code a newer release wrote
        return code


def _retried(conversion: Conversion) -> bool:
    try:
        return conversion_retry(conversion=conversion)
    except ConversionExpired:  # its source is gone
        return False


class ErrorCodeFilter(admin.SimpleListFilter):
    """The failed jobs' codes by their labels (the field keeps no choices, so a new code needs no migration)."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = Conversion.objects.exclude(error_code="").values_list("error_code", flat=True).distinct()
        return sorted((code, error_label(code)) for code in codes)

    def queryset(self, request, queryset):
        return queryset.filter(error_code=self.value()) if self.value() else queryset


class TrackInline(admin.TabularInline):
    """A split job's tracks, read-only: the worker writes them with the job's move to done."""

    model = Track
    fields = ["number", "title", "start_seconds", "duration_seconds", "stored_mp3", "size"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="MP3")
    def stored_mp3(self, track):
        return track.mp3.name  # as text: the shared storages serve no URL (see ConversionAdmin)


@admin.register(Conversion)
class ConversionAdmin(admin.ModelAdmin):
    list_display = ["original_filename", "owner", "status", "progress", "error", "duration_seconds", "mp3_size", "created_at"]
    list_filter = ["status", ErrorCodeFilter, "created_at", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["original_filename", "source_url", "owner__email", "=id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    actions = ["retry_failed", "cancel", resend_email]
    inlines = [TrackInline]
    readonly_fields = [
        "id", "owner", "original_filename", "source_url", "stored_source", "source_size", "status", "progress", "attempt",
        "error", "error_message", "error_detail", "stored_mp3", "mp3_size", "duration_seconds", "options",
        "created_at", "started_at", "finished_at", "notified",
    ]
    fieldsets = (
        (None, {"fields": ("id", "owner", "original_filename", "status", "progress", "attempt", "options")}),
        ("Files", {"fields": ("source_url", "stored_source", "source_size", "stored_mp3", "mp3_size", "duration_seconds")}),
        ("Failure", {"fields": ("error", "error_message", "error_detail")}),
        ("Timeline", {"fields": ("created_at", "started_at", "finished_at", "notified")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(notified_at=notified_at())

    # The stored names as text: the admin would link a file field to its URL, and the shared storages have none
    # (files are only served by the owner-checked download views).
    @admin.display(description="source")
    def stored_source(self, conversion):
        return conversion.source.name or "-"

    @admin.display(description="mp3")
    def stored_mp3(self, conversion):
        return conversion.mp3.name or "-"

    @admin.display(description="error code", ordering="error_code")
    def error(self, conversion):
        return f"{error_label(conversion.error_code)} ({conversion.error_code})" if conversion.error_code else "-"

    @admin.display(description="notified at")
    def notified(self, conversion):
        return conversion.notified_at or "-"

    def has_add_permission(self, request):
        return False  # jobs are created by uploads and URL imports only

    @admin.action(description="Retry selected failed or cancelled conversions", permissions=["change"])
    def retry_failed(self, request, queryset):
        retried = sum(_retried(conversion) for conversion in queryset)
        skipped = queryset.count() - retried
        self.message_user(
            request, f"{retried} conversion(s) queued again; {skipped} skipped (not failed or cancelled, or expired).",
            messages.SUCCESS if retried else messages.WARNING,
        )

    @admin.action(description="Cancel selected queued or running conversions", permissions=["change"])
    def cancel(self, request, queryset):
        cancelled = sum(conversion_cancel(conversion=conversion) for conversion in list(queryset))
        skipped = len(queryset) - cancelled
        self.message_user(request, f"{cancelled} conversion(s) cancelled; {skipped} skipped (already finished).",
                          messages.SUCCESS if cancelled else messages.WARNING)
