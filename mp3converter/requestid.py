"""Every request has an id: the one its `X-Request-ID` header brings when that is sane (an ingress controller's, a
client's), else a new one. The answer carries it back in `X-Request-ID`; every line logged while the request is
served carries it and, once the request's user is known, the user's id (mp3converter/joblog.py); so do the lines of
the tasks the request queues, in the workers. A user's report that quotes the id leads to every line about it.
"""

import uuid

from django.core.signals import request_finished
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty

from . import joblog

HEADER = "X-Request-ID"
# Where gunicorn's access log line finds the ids (mp3converter/logformat.py): the WSGI environ is request.META.
ENVIRON_REQUEST_ID = "mp3converter.request_id"
ENVIRON_USER_ID = "mp3converter.user_id"


def request_id_from(header: str | None) -> str:
    """The incoming id when it is short and made of safe characters (it goes into log lines and a header as it is);
    a new random one otherwise."""
    return header if joblog.is_sane_request_id(header) else uuid.uuid4().hex


def user_id_of(request) -> str | None:
    """The signed-in user's id once something serving the request has looked the user up (the session middleware's
    lazy user, or DRF's authentication, which sets `request.user`); None before that, and for an anonymous request.
    Never looks the user up itself: that would query the session in the middle of a log call."""
    user = vars(request).get("user")
    if isinstance(user, LazyObject):
        user = user._wrapped
    if user is None or user is empty or not user.is_authenticated:
        return None
    return str(user.pk)


class RequestIdMiddleware:
    """First in MIDDLEWARE, so every answer has the header and every line logged for the request carries the id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(HEADER))
        request.META[ENVIRON_REQUEST_ID] = request_id
        joblog.request_begin(request_id, user=lambda: user_id_of(request))
        # The context stays until the answer is closed (request_finished), not only until it leaves the middleware:
        # Django logs a 4xx after the middleware returned, and a streamed download runs after that.
        response = self.get_response(request)
        response[HEADER] = request_id
        user_id = user_id_of(request)
        if user_id is not None:
            request.META[ENVIRON_USER_ID] = user_id
        return response


@receiver(request_finished, dispatch_uid="mp3converter.requestid.request_end")
def _request_end(**kwargs) -> None:
    joblog.request_end()
