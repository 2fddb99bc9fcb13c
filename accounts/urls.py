from django.urls import path

from .views import (
    ApiKeyDetailView,
    ApiKeyListCreateView,
    LogoutView,
    MeView,
    PasswordChangeView,
    RegisterView,
    ResendVerificationView,
    TokenRefreshView,
    TokenView,
    VerifyEmailView,
)

urlpatterns = [
    path("register/", RegisterView.as_view(), name="register"),
    path("verify/", VerifyEmailView.as_view(), name="verify-email"),
    path("verify/resend/", ResendVerificationView.as_view(), name="verify-email-resend"),
    path("token/", TokenView.as_view(), name="token"),
    path("token/refresh/", TokenRefreshView.as_view(), name="token-refresh"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("password/", PasswordChangeView.as_view(), name="password-change"),
    path("me/", MeView.as_view(), name="me"),
    path("keys/", ApiKeyListCreateView.as_view(), name="api-key-list"),
    path("keys/<str:key_id>/", ApiKeyDetailView.as_view(), name="api-key-detail"),
]
