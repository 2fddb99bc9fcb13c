"""The routes of both APIs: the native one under /api/conversions/, the classic one at the site's root."""

from django.urls import path

from .classic import ClassicDownloadView, ClassicLoginView, ClassicUploadView
from .native import (
    ConversionCancelView,
    ConversionDetailView,
    ConversionDownloadView,
    ConversionListCreateView,
    ConversionRetryView,
    ConversionZipView,
)

urlpatterns = [
    path("", ConversionListCreateView.as_view(), name="conversion-list"),
    # Before the job's routes: "zip" would otherwise be taken for a job's id.
    path("zip/", ConversionZipView.as_view(), name="conversion-zip"),
    path("<str:conversion_id>/", ConversionDetailView.as_view(), name="conversion-detail"),
    path("<str:conversion_id>/download/", ConversionDownloadView.as_view(), name="conversion-download"),
    path("<str:conversion_id>/cancel/", ConversionCancelView.as_view(), name="conversion-cancel"),
    path("<str:conversion_id>/retry/", ConversionRetryView.as_view(), name="conversion-retry"),
]

# Exact paths without trailing slashes, as the classic API's clients call them.
classic_urlpatterns = [
    path("login", ClassicLoginView.as_view(), name="classic-login"),
    path("upload", ClassicUploadView.as_view(), name="classic-upload"),
    path("download", ClassicDownloadView.as_view(), name="classic-download"),
]
