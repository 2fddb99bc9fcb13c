"""Signed, expiring links that confirm an email address, and the account emails that carry them.

A link holds the user's id and the address it was sent to, signed with the secret key (`django.core.signing`,
with a salt of its own) and timestamped: it stops working after `EMAIL_VERIFICATION_DAYS`, and when the account's
address is no longer the one it was sent to.

The web process signs the link and queues the email on the `email` queue; the notify worker, the one role that
talks to the mail server, sends it and tries again while the server refuses.
"""

import logging
from datetime import timedelta
from urllib.parse import urlencode

from kombu.exceptions import OperationalError as BrokerError

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from .models import User

logger = logging.getLogger(__name__)
SALT = "accounts.email-verification"


def verification_token(user: User) -> str:
    return signing.dumps({"user": user.pk, "email": user.email}, salt=SALT, compress=True)


def verification_link(user: User) -> str:
    return f"{settings.PUBLIC_BASE_URL}{reverse('verify-email')}?{urlencode({'token': verification_token(user)})}"


def verified_user(token: str) -> User | None:
    """The account a valid, unexpired link names, or None (a bad signature, too old, or the address changed)."""
    try:
        claims = signing.loads(token, salt=SALT, max_age=timedelta(days=settings.EMAIL_VERIFICATION_DAYS))
    except signing.BadSignature:  # SignatureExpired is one
        return None
    if not isinstance(claims, dict):
        return None
    user = User.objects.filter(pk=claims.get("user"), is_active=True).first()
    return user if user is not None and user.email == claims.get("email") else None


# The account emails, by kind: the template (its first line is the subject).
EMAILS = {
    "verify": "accounts/verify_email.txt",
    "registration_attempt": "accounts/registration_attempt.txt",
    "password_reset": "accounts/password_reset_email.txt",
    # A webhook endpoint the service disabled after its deliveries kept failing (notifications/webhooks.py).
    "webhook_disabled": "notifications/webhook_disabled.txt",
}


def account_email_queue(*, user: User, kind: str, context: dict | None = None) -> None:
    """Hand one account email to the notify worker (the `email` queue), once the transaction commits.

    The link is signed here, in the web process. A broker that refuses is logged, not answered: the account
    stands either way, and `POST /api/auth/verify/resend/` sends the link again. `context` goes to the template
    as it is (strings only: it travels in the message).
    """
    from .tasks import send_account_email_task

    context = {**(context or {}), **({"link": verification_link(user)} if kind == "verify" else {})}

    def publish():
        try:
            send_account_email_task.apply_async(args=[user.pk, kind, context], queue="email")
        except (BrokerError, OSError):
            logger.warning("account email not queued: kind=%s user=%s", kind, user.pk, exc_info=True)

    transaction.on_commit(publish)


def account_email_send(*, user_id: int, kind: str, context: dict) -> bool:
    """Send one account email (the notify worker does); False when the account is gone or inactive.

    SMTP errors are OSErrors and propagate: the task tries again.
    """
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    extra = {"days": settings.EMAIL_VERIFICATION_DAYS, "base_url": settings.PUBLIC_BASE_URL}
    subject, _, body = render_to_string(EMAILS[kind], {"user": user, **extra, **context}).partition("\n")
    send_mail(subject.strip(), body.lstrip("\n"), settings.DEFAULT_FROM_EMAIL, [user.email])
    return True
