"""The conversion pages, at the site's root."""

from django.urls import path

from . import views

app_name = "pages"

urlpatterns = [
    path("", views.home, name="home"),
    path("conversions/", views.conversion_list_page, name="conversion-list"),
    path("conversions/zip/", views.conversion_zip_page, name="conversion-zip"),
    path("conversions/<uuid:conversion_id>/", views.conversion_page, name="conversion"),
    path("conversions/<uuid:conversion_id>/<slug:action>/", views.conversion_action, name="conversion-action"),
]
