from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from .models import ApiKey, User
from .services import api_key_revoke


class EmailUserCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def save(self, commit=True):
        # An account an administrator makes counts as confirmed: no verification email is sent.
        self.instance.email_verified = True
        return super().save(commit=commit)


class EmailUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = EmailUserChangeForm
    add_form = EmailUserCreationForm
    ordering = ["email"]
    list_display = ["email", "email_verified", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active", "email_verified"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "email_verified", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
        (
            "Limits",
            {
                "fields": ("quota_active_jobs", "quota_uploads_per_hour", "quota_storage_mb"),
                "description": "Empty: the service's default. 0 allows nothing. Staff have no limits.",
            },
        ),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made by their owners, who see the key once; the admin sees what they see, never a secret or its hash,
    and may revoke keys."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "user__email", "=lookup"]
    list_select_related = ["user"]
    fields = ["id", "user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # only its owner may see a key, so only its owner makes one

    def has_change_permission(self, request, obj=None):
        # The list and its revoke action; a key's own page is read-only.
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = sum(api_key_revoke(api_key=api_key) for api_key in queryset)
        skipped = len(queryset) - revoked
        self.message_user(request, f"{revoked} key(s) revoked; {skipped} skipped (revoked already).",
                          messages.SUCCESS if revoked else messages.WARNING)
