"""The signed download link, opened in a browser from the email: `GET /links/<token>/`, with no sign-in.

A working link serves what the owner's download does (`downloads.conversion_download`: the MP3 streamed, with
`Range`, `ETag`, its name and `Cache-Control: private, no-store`; a split job's ZIP of its tracks). A refused one
answers its status (403 or 410) with a short page saying why, in words: this surface's error handler, for people
rather than programs. The token is a credential: nothing here logs it.
"""

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_safe

from mp3converter.api import as_service_error, error_headers
from mp3converter.errors import ServiceError

from ..services import conversion_link_resolve
from .downloads import conversion_download

logger = logging.getLogger(__name__)

TEMPLATE = "conversions/link_refused.html"


@require_safe
def conversion_link_download(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        conversion = conversion_link_resolve(token=token)
        response = conversion_download(request, conversion)
    except Exception as exc:
        if (error := as_service_error(exc)) is None:
            raise
        return refused(request, error)
    logger.info("conversion %s: served through a download link", conversion.pk)
    return response


def refused(request: HttpRequest, error: ServiceError) -> HttpResponse:
    """The page that says why a link does not work, with the error's status (and Retry-After, if it has one)."""
    response = render(request, TEMPLATE, {"code": error.code.value, "message": error.message}, status=error.status)
    for name, value in error_headers(error).items():
        response[name] = value
    return response
