"""The account pages' forms. Each writes through the accounts services, as the API does, so a page and the API
cannot differ: a password set here revokes the account's API tokens too, and mail goes out through the notify
worker."""

from django import forms
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.password_validation import password_validators_help_text_html, validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from ..models import User
from ..selectors import user_authenticate
from ..services import user_change_password
from ..verification import account_email_queue


# Django's own code for a wrong old password (a form error, not one of the service's ErrorCodes).
PASSWORD_INCORRECT = "password_incorrect"


class SignInForm(auth_forms.AuthenticationForm):
    """Django's sign-in form with an email field; `authenticate()` runs the sign-in throttle."""

    username = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )
    error_messages = {
        **auth_forms.AuthenticationForm.error_messages,
        "invalid_login": _("The email address or the password is wrong. Both are case-sensitive for the password."),
    }


class SignUpForm(forms.Form):
    email = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validators_help_text_html(),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("email") and cleaned.get("password"):
            try:
                validate_password(cleaned["password"], user=User(email=cleaned["email"].lower()))
            except ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    """The old password is checked through `authenticate()`, so wrong guesses count against the sign-in limit."""

    def __init__(self, user, *args, request=None, **kwargs):
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self):
        old_password = self.cleaned_data["old_password"]
        if user_authenticate(request=self.request, email=self.user.email, password=old_password) is None:
            raise ValidationError(self.error_messages[PASSWORD_INCORRECT], code=PASSWORD_INCORRECT)
        return old_password

    def save(self, commit=True):
        return user_change_password(user=self.user, new_password=self.cleaned_data["new_password1"])


class SetPasswordForm(auth_forms.SetPasswordForm):
    """The password reset's last step; setting the password revokes the account's API tokens."""

    def save(self, commit=True):
        return user_change_password(user=self.user, new_password=self.cleaned_data["new_password1"])


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's reset form; the email goes through the notify worker like every account email."""

    email = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "email"}))

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name=None):
        path = reverse("account:password-reset-confirm", args=[context["uid"], context["token"]])
        account_email_queue(user=context["user"], kind="password_reset", context={"path": path})


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("What the key is for, to tell it from others: e.g. the script or the machine that uses it."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
