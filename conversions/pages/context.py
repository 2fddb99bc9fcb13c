"""What every page's template may use."""

from django.conf import settings

from ..models import Conversion

MB = 1024 * 1024


def web_app(request) -> dict:
    return {
        "max_upload_mb": settings.MAX_UPLOAD_MB,
        # The convert page sends files past this by tus, in chunks of the largest size one request may carry.
        "tus_threshold_bytes": settings.TUS_WEB_THRESHOLD_MB * MB,
        "tus_chunk_bytes": settings.TUS_MAX_CHUNK_MB * MB,
        # The script shows a job's new status in these words (a JSON data block, never run as a script).
        "status_labels": {status.value: str(status.label) for status in Conversion.Status},
    }
