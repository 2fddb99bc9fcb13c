from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from conversions.api.urls import classic_urlpatterns, link_urlpatterns

from .health import healthz, readyz

# Swagger UI sets inline styles on its elements: allowed on this one page.
SWAGGER_UI = csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="schema"))

urlpatterns = [
    path("", include("conversions.pages.urls")),
    path("account/", include("accounts.pages.urls")),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/conversions/", include("conversions.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's script as a file, so the page runs under the Content-Security-Policy.
    path("api/docs/", SWAGGER_UI, name="docs"),
    path("api-auth/", include("rest_framework.urls")),
    *classic_urlpatterns,
    *link_urlpatterns,
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
