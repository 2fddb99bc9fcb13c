"""The "ready" email as it reaches a mail server (the real SMTP catcher): the classic first line, the conversion's
page, and a signed link that downloads the MP3 in a browser, with no sign-in, until the date the email gives."""

import re
from datetime import UTC, datetime

import pytest
from django.core import signing
from django.core.files.storage import default_storage
from django.test import Client

from conversions.services import links
from notifications import services
from notifications.channels.email import conversion_page_url
from notifications.services import delivery_send, notifications_dispatch
from tests.conversions.api.helpers import mp3_bytes
from tests.factories import DoneConversionFactory
from tests.utils import wait_for

LINK = re.compile(
    r"no sign-in needed \(anyone who has the link can use it, until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC\):\n"
    r"http://testserver(/links/(\S+)/)\n"
)


@pytest.fixture
def done(user, media):
    job = DoneConversionFactory(owner=user, original_filename="talk.mkv", mp3_data=media("mp3").read_bytes())
    yield job
    default_storage.delete(job.mp3.name)


@pytest.fixture
def queued(monkeypatch):
    """The deliveries handed to the delivery task, sent here in-process instead of by a worker."""
    sent = []
    monkeypatch.setattr(services, "_enqueue", sent.append)
    return sent


def emails_to(mailbox, address):
    return [message for message in mailbox.to(address) if message["To"] == address]


def test_the_ready_email_links_the_page_and_a_download_that_works_without_signing_in(
    db, settings, done, user, mailbox, queued
):
    # Through the SMTP catcher, not pytest-django's in-memory outbox.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    [delivery] = notifications_dispatch(conversion_id=done.id, attempt=done.attempt)
    delivery_send(delivery_id=delivery.pk)
    [message] = wait_for(lambda: emails_to(mailbox, user.email), timeout=10, message="the ready email")
    body = message.get_payload(decode=True).decode().replace("\r\n", "\n")  # SMTP ends lines with CRLF

    assert message["Subject"] == "MP3 Download"
    assert body.splitlines()[0] == f"mp3 file_id: {done.id} is now ready!"
    assert conversion_page_url(done) == f"http://testserver/conversions/{done.id}/"
    assert f"See it on its page:\n{conversion_page_url(done)}\n" in body
    assert f"Classic API: GET http://testserver/download?fid={done.id} with your token.\n" in body

    match = LINK.search(body)
    assert match, body
    until, path, token = match.groups()
    expires_at = datetime.fromtimestamp(signing.loads(token, salt=links.SALT)["e"], tz=UTC)
    assert until == f"{expires_at:%Y-%m-%d %H:%M}"

    response = Client().get(path)  # a browser: no session, no token
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="talk.mp3"'
    assert mp3_bytes(response) == default_storage.open(done.mp3.name).read()
