"""Turning errors into API answers: what every surface shares, and the native API's handler (DRF's
EXCEPTION_HANDLER). The classic API has its own handler, in plain text (conversions/api/classic.py)."""

from django.db import InterfaceError, OperationalError
from rest_framework import renderers
from rest_framework.response import Response

from .errors import DatabaseUnavailable, ServiceError


def as_service_error(exc: Exception) -> ServiceError | None:
    """The ServiceError an exception stands for, or None if it is not one of ours (DRF's own errors, a bug).

    A database that cannot be reached surfaces as the driver's error, deep in any view: it is a 503 like the others,
    told in our words, never the driver's.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, OperationalError | InterfaceError):
        return DatabaseUnavailable()
    return None


def error_headers(error: ServiceError) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)} if error.retry_after else {}


def exception_handler(exc, context):
    # Imported here: rest_framework.views reads DEFAULT_RENDERER_CLASSES when it loads, which names this module's
    # renderer; importing it at the top made this module's first import (before any view's) a circular one.
    from rest_framework.views import exception_handler as drf_exception_handler

    error = as_service_error(exc)
    if error is None:
        return drf_exception_handler(exc, context)
    if fields := error.field_errors():
        # Reads like any other field error: {"audio_track": ["This file has 1 audio track: ..."]}.
        return Response(fields, status=error.status, headers=error_headers(error))
    return Response({"code": error.code, "detail": error.message}, status=error.status, headers=error_headers(error))


# DRF's HTML pages (the browsable API and its sign-in page) set inline styles in their templates: these pages alone
# allow them. Scripts stay the site's own files, as everywhere.
INLINE_STYLES = {"style-src": ["'unsafe-inline'"]}


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if (response := (renderer_context or {}).get("response")) is not None:
            response._csp_update = INLINE_STYLES  # read by django-csp's middleware (what `csp_update` sets)
        return super().render(data, accepted_media_type, renderer_context)
