"""The account emails (the verification link, a repeated registration), sent by the notify worker from the
`email` queue."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


# SMTP errors are OSErrors (smtplib.SMTPException is one): tried again with backoff, about an hour in all.
@shared_task(autoretry_for=(OSError,), retry_backoff=5, retry_backoff_max=600, retry_jitter=True, max_retries=10)
def send_account_email_task(user_id: int, kind: str, context: dict) -> None:
    from .verification import EMAILS, account_email_send

    if not isinstance(user_id, int) or kind not in EMAILS or not isinstance(context, dict):
        logger.warning("account email dropped: malformed arguments user_id=%r kind=%r", str(user_id)[:40], str(kind)[:40])
        return
    account_email_send(user_id=user_id, kind=kind, context=context)
