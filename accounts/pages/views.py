"""The account pages: sign up, sign in and out, the password (change and reset by email) and the account with its
usage and its API keys. Django's auth views do the work; the forms write through the accounts services."""

from types import SimpleNamespace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from rest_framework.parsers import FormParser
from rest_framework.request import Request

from conversions.selectors import conversion_usage
from conversions.services import quota_limits

from ..selectors import api_key_get, api_key_list
from ..services import api_key_create, api_key_revoke, user_register, user_send_verification
from ..throttling import ClientAddressRateThrottle, RegisterAddressThrottle
from .forms import ApiKeyForm, PasswordChangeForm, PasswordResetForm, SetPasswordForm, SignInForm, SignUpForm

MB = 1024 * 1024


def _registration_wait(request) -> int | None:
    """Seconds to wait when this address or email address signed up too often (the API's throttles), else None."""
    api_request = Request(request, parsers=[FormParser()])
    view = SimpleNamespace(throttle_scope="register")
    for throttle in (ClientAddressRateThrottle(), RegisterAddressThrottle()):
        if not throttle.allow_request(api_request, view):
            return max(1, int(throttle.wait() or 1))
    return None


def signup(request):
    if request.user.is_authenticated:
        return redirect("pages:home")
    if not settings.REGISTRATION_OPEN:
        return render(request, "accounts/signup_closed.html", {"nav": "signup"}, status=403)
    form = SignUpForm(request.POST or None)
    if request.method == "POST":
        if (wait := _registration_wait(request)) is not None:
            response = render(request, "accounts/too_many_attempts.html", {"wait": wait, "signup": True}, status=429)
            response["Retry-After"] = str(wait)
            return response
        if form.is_valid():
            user_register(email=form.cleaned_data["email"], password=form.cleaned_data["password"])
            return render(request, "accounts/signup_done.html", {"email": form.cleaned_data["email"], "nav": "signup"})
    return render(request, "accounts/signup.html", {"form": form, "nav": "signup"})


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True
    extra_context = {"nav": "login"}


class LogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("pages:home")


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    form_class = PasswordChangeForm
    success_url = reverse_lazy("account:home")
    extra_context = {"nav": "account"}

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, _("Your password is changed. Apps signed in with the old one must sign in again."))
        return response


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    form_class = PasswordResetForm
    success_url = reverse_lazy("account:password-reset-sent")
    extra_context = {"nav": "login"}


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_sent.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    form_class = SetPasswordForm
    success_url = reverse_lazy("account:password-reset-complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


def _meter(used: int, limit: int | None) -> dict:
    return {"used": used, "limit": limit, "percent": None if not limit else min(100, round(100 * used / limit))}


def _account_page(request, *, key_form: ApiKeyForm | None = None, new_key=None, new_key_value: str = "",
                  new_job_webhook_secret: str = ""):
    usage = conversion_usage(user=request.user)
    limits = quota_limits(user=request.user)
    context = {
        "nav": "account",
        "active_jobs": _meter(usage.active_jobs, limits.active_jobs),
        "uploads": _meter(usage.uploads_last_hour, limits.uploads_per_hour),
        "storage": _meter(usage.storage_bytes, limits.storage_bytes),
        "require_verification": settings.REQUIRE_EMAIL_VERIFICATION,
        "api_keys": api_key_list(user=request.user),
        "key_form": key_form or ApiKeyForm(),
        "new_key": new_key,
        "new_key_value": new_key_value,
        "new_job_webhook_secret": new_job_webhook_secret,
    }
    return TemplateResponse(request, "accounts/account.html", context)


@login_required
def account(request):
    return _account_page(request)


@login_required
@require_POST
def api_key_create_page(request):
    """Make a key and show it on the account page, in this answer only.

    Rendered rather than redirected to the account page: a redirect would have to carry the key through the session
    or a cookie, and the key must live nowhere but in this one answer (which is never cached: no-store).
    """
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _account_page(request, key_form=form)
    api_key, key = api_key_create(user=request.user, name=form.cleaned_data["name"])
    return _account_page(request, new_key=api_key, new_key_value=key)


@login_required
@require_POST
def api_key_revoke_page(request, key_id):
    api_key = api_key_get(user=request.user, key_id=key_id)
    if api_key is None:
        raise Http404(_("No API key with this id."))
    api_key_revoke(api_key=api_key)
    messages.success(request, _("The key “%(name)s” is revoked: it no longer works.") % {"name": api_key.name})
    return redirect(reverse("account:home") + "#api-keys")


@login_required
@require_POST
def job_webhook_secret_page(request):
    """A new secret for the webhooks of the user's jobs' own webhook_url, shown on the account page in this answer
    only (rendered, not redirected, as a new API key is)."""
    from notifications.webhooks import job_webhook_secret_rotate

    return _account_page(request, new_job_webhook_secret=job_webhook_secret_rotate(owner=request.user))


@login_required
@require_POST
def verify_resend(request):
    if user_send_verification(user=request.user):
        messages.success(request, _("We sent the link again to %(email)s.") % {"email": request.user.email})
    else:
        messages.info(request, _("Your email address is already confirmed."))
    return redirect("account:home")
