"""`Cache-Control: no-store` on every answer the service makes, unless its view chose its own caching.

API answers carry private data: tokens (`/api/auth/token/`, the classic `/login`), the signed-in user
(`/api/auth/me/`), jobs and their names. Neither a shared cache nor the browser may keep a copy. Static files never get
here: WhiteNoise, before this middleware, answers them with their own caching headers; downloads and ZIPs say
`private, no-store` themselves (conversions/api/downloads.py), and a job's JSON answer says `private, no-cache` so its
owner's client can poll it with If-None-Match (conversions/api/conditional.py): private either way.
"""

from django.http import HttpRequest, HttpResponseBase


class NoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
