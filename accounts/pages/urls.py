"""The account pages, under /account/."""

from django.urls import path

from . import views

app_name = "account"

urlpatterns = [
    path("", views.account, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("verify/resend/", views.verify_resend, name="verify-resend"),
    path("keys/", views.api_key_create_page, name="api-key-create"),
    path("keys/<str:key_id>/revoke/", views.api_key_revoke_page, name="api-key-revoke"),
    path("webhook-secret/", views.job_webhook_secret_page, name="job-webhook-secret"),
    path("password/", views.PasswordChangeView.as_view(), name="password-change"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path("password/reset/sent/", views.PasswordResetDoneView.as_view(), name="password-reset-sent"),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("password/reset/done/", views.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
]
