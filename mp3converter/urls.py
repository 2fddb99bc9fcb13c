from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from conversions.api.urls import classic_urlpatterns, link_urlpatterns, upload_urlpatterns

from .api import INLINE_STYLES
from .health import healthz, readyz

# Swagger UI and DRF's sign-in page set inline styles on their elements: allowed on these pages only.
SWAGGER_UI = csp_update(INLINE_STYLES)(SpectacularSwaggerSplitView.as_view(url_name="schema"))
# DRF's "Log in" and "Log out" for the browsable API (rest_framework.urls, with its inline styles allowed); without a
# `next`, signing in there leads to the conversions.
API_AUTH = (
    [
        path(
            "login/",
            csp_update(INLINE_STYLES)(
                auth_views.LoginView.as_view(template_name="rest_framework/login.html", next_page="conversion-list")
            ),
            name="login",
        ),
        path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    ],
    "rest_framework",
)

urlpatterns = [
    path("", include("conversions.pages.urls")),
    path("account/", include("accounts.pages.urls")),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/conversions/", include("conversions.api.urls")),
    path("api/uploads/", include(upload_urlpatterns)),
    path("api/webhooks/", include("notifications.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's script as a file, so the page runs under the Content-Security-Policy.
    path("api/docs/", SWAGGER_UI, name="docs"),
    path("api-auth/", include(API_AUTH)),
    *classic_urlpatterns,
    *link_urlpatterns,
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
