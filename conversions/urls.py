from django.urls import path

from .views import ConversionDetailView, ConversionDownloadView, ConversionListCreateView

urlpatterns = [
    path("", ConversionListCreateView.as_view(), name="conversion-list"),
    path("<str:conversion_id>/", ConversionDetailView.as_view(), name="conversion-detail"),
    path("<str:conversion_id>/download/", ConversionDownloadView.as_view(), name="conversion-download"),
]
