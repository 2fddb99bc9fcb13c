"""Filters for the conversion pages."""

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """1:02:03, 4:05, or an empty string when unknown."""
    if seconds is None:
        return ""
    total = round(float(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
