"""The email channel: one message to the owner when a job is done (with its download links) or has failed."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from conversions.models import Conversion

from .base import Channel


def _url(path: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{path}"


def message(conversion: Conversion) -> tuple[str, str]:
    """Subject and body. The first line of a done job's email is the classic format its clients read."""
    if conversion.status == Conversion.Status.DONE:
        body = (
            f"mp3 file_id: {conversion.id} is now ready!\n\n"
            f"Your MP3 of {conversion.original_filename} is ready to download:\n"
            f"{_url(reverse('conversion-download', args=[conversion.id]))}\n\n"
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
