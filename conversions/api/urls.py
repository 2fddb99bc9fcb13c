"""The routes of both APIs: the native one under /api/conversions/ (and its resumable uploads under /api/uploads/),
the classic one at the site's root; and the signed download links, at the site's root too."""

from django.urls import path

from .classic import ClassicDownloadView, ClassicLoginView, ClassicUploadView
from .links import conversion_link_download
from .tus import UploadCreateView, UploadView
from .native import (
    ConversionCancelView,
    ConversionDetailView,
    ConversionDownloadView,
    ConversionLinksRevokeView,
    ConversionLinkView,
    ConversionListCreateView,
    ConversionRetryView,
    ConversionTrackDownloadView,
    ConversionZipView,
)

urlpatterns = [
    path("", ConversionListCreateView.as_view(), name="conversion-list"),
    # Before the job's routes: "zip" would otherwise be taken for a job's id.
    path("zip/", ConversionZipView.as_view(), name="conversion-zip"),
    path("<str:conversion_id>/", ConversionDetailView.as_view(), name="conversion-detail"),
    path("<str:conversion_id>/download/", ConversionDownloadView.as_view(), name="conversion-download"),
    path(
        "<str:conversion_id>/tracks/<str:number>/download/", ConversionTrackDownloadView.as_view(),
        name="conversion-track-download",
    ),
    path("<str:conversion_id>/cancel/", ConversionCancelView.as_view(), name="conversion-cancel"),
    path("<str:conversion_id>/retry/", ConversionRetryView.as_view(), name="conversion-retry"),
    path("<str:conversion_id>/link/", ConversionLinkView.as_view(), name="conversion-link"),
    path("<str:conversion_id>/links/revoke/", ConversionLinksRevokeView.as_view(), name="conversion-links-revoke"),
]

# Resumable (tus) uploads, under /api/uploads/ (conversions/api/tus.py).
upload_urlpatterns = [
    path("", UploadCreateView.as_view(), name="upload-list"),
    path("<str:upload_id>/", UploadView.as_view(), name="upload-detail"),
]

# Exact paths without trailing slashes, as the classic API's clients call them.
classic_urlpatterns = [
    path("login", ClassicLoginView.as_view(), name="classic-login"),
    path("upload", ClassicUploadView.as_view(), name="classic-upload"),
    path("download", ClassicDownloadView.as_view(), name="classic-download"),
]

# Opened from the email in a browser, with no sign-in: the token is the credential (conversions/api/links.py).
link_urlpatterns = [
    path("links/<str:token>/", conversion_link_download, name="conversion-link-download"),
]
