"""The email channel: one message to the owner when a job is done (with its page and a signed download link) or has
failed."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from conversions.models import Conversion
from conversions.services import conversion_link_create

from .base import Channel


def _url(path: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{path}"


def conversion_page_url(conversion: Conversion) -> str:
    """The conversion's web page, where its owner signs in to see it."""
    return _url(reverse("pages:conversion", args=[conversion.id]))


def message(conversion: Conversion) -> tuple[str, str]:
    """Subject and body. The first line of a done job's email is the classic format its clients read.

    A done job's email carries a fresh signed download link, which a browser opens with no sign-in (the API's
    download URL needs a token, so a browser would only get a 401).
    """
    if conversion.status == Conversion.Status.DONE:
        link = conversion_link_create(conversion=conversion)
        body = (
            f"mp3 file_id: {conversion.id} is now ready!\n\n"
            f"Your MP3 of {conversion.original_filename} is ready. See it on its page:\n"
            f"{conversion_page_url(conversion)}\n\n"
            f"Or download it with this link, no sign-in needed (anyone who has the link can use it, until "
            f"{link.expires_at:%Y-%m-%d %H:%M} UTC):\n"
            f"{link.url}\n\n"
            f"Classic API: GET {_url(reverse('classic-download'))}?fid={conversion.id} with your token.\n"
        )
        return "MP3 Download", body
    body = (
        f"We could not convert {conversion.original_filename} to MP3.\n\n"
        f"Reason: {conversion.error_message}\n\nJob id: {conversion.id}\n"
    )
    return "MP3 conversion failed", body


class EmailChannel(Channel):
    name = "email"
    queue = "email"

    def applies_to(self, conversion: Conversion) -> bool:
        return bool(conversion.owner.email)

    def send(self, conversion: Conversion) -> None:
        # SMTP errors are OSErrors (smtplib.SMTPException is one): the delivery task tries again with backoff.
        subject, body = message(conversion)
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [conversion.owner.email])
