from django.urls import path

from .views import (
    ConversionCancelView,
    ConversionDetailView,
    ConversionDownloadView,
    ConversionListCreateView,
    ConversionRetryView,
)

urlpatterns = [
    path("", ConversionListCreateView.as_view(), name="conversion-list"),
    path("<str:conversion_id>/", ConversionDetailView.as_view(), name="conversion-detail"),
    path("<str:conversion_id>/download/", ConversionDownloadView.as_view(), name="conversion-download"),
    path("<str:conversion_id>/cancel/", ConversionCancelView.as_view(), name="conversion-cancel"),
    path("<str:conversion_id>/retry/", ConversionRetryView.as_view(), name="conversion-retry"),
]
