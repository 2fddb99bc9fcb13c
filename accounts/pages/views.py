"""The account pages: sign up, sign in and out, the password (change and reset by email) and the account with its
usage. Django's auth views do the work; the forms write through the accounts services."""

from types import SimpleNamespace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from rest_framework.parsers import FormParser
from rest_framework.request import Request

from conversions.selectors import conversion_usage
from conversions.services import quota_limits

from ..services import user_register, user_send_verification
from ..throttling import ClientAddressRateThrottle, RegisterAddressThrottle
from .forms import PasswordChangeForm, PasswordResetForm, SetPasswordForm, SignInForm, SignUpForm

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


@login_required
def account(request):
    usage = conversion_usage(user=request.user)
    limits = quota_limits(user=request.user)
    context = {
        "nav": "account",
        "active_jobs": _meter(usage.active_jobs, limits.active_jobs),
        "uploads": _meter(usage.uploads_last_hour, limits.uploads_per_hour),
        "storage": _meter(usage.storage_bytes, limits.storage_bytes),
        "require_verification": settings.REQUIRE_EMAIL_VERIFICATION,
    }
    return TemplateResponse(request, "accounts/account.html", context)


@login_required
@require_POST
def verify_resend(request):
    if user_send_verification(user=request.user):
        messages.success(request, _("We sent the link again to %(email)s.") % {"email": request.user.email})
    else:
        messages.info(request, _("Your email address is already confirmed."))
    return redirect("account:home")
