from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from conversions.classic import ClassicDownloadView, ClassicLoginView, ClassicUploadView

from .health import healthz, readyz

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/conversions/", include("conversions.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include("rest_framework.urls")),
    # The classic API: exact paths without trailing slashes, as its clients call them.
    path("login", ClassicLoginView.as_view(), name="classic-login"),
    path("upload", ClassicUploadView.as_view(), name="classic-upload"),
    path("download", ClassicDownloadView.as_view(), name="classic-download"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
