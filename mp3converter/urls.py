from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from conversions.api.urls import classic_urlpatterns, link_urlpatterns

from .health import healthz, readyz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="docs", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/conversions/", include("conversions.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include("rest_framework.urls")),
    *classic_urlpatterns,
    *link_urlpatterns,
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
