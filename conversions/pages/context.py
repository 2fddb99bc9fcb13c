"""What every page's template may use."""

from django.conf import settings

from ..models import Conversion


def web_app(request) -> dict:
    return {
        "max_upload_mb": settings.MAX_UPLOAD_MB,
        # The script shows a job's new status in these words (a JSON data block, never run as a script).
        "status_labels": {status.value: str(status.label) for status in Conversion.Status},
    }
