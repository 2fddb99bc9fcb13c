"""File names: the display name kept for an upload, and the names a job's files are stored and downloaded under.

The user's file name is only ever shown back, never used to store anything.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

from .engine import MP3


def clean_filename(name: str) -> str:
    """A display name that is safe to store and echo back: no directories, no control characters, at most 255."""
    name = unicodedata.normalize("NFC", name or "")
    name = PurePath(name.replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f]", " ", name).strip()
    if name in ("", ".", ".."):
        name = "upload"
    if len(name) > 255:
        suffix = PurePath(name).suffix[:16]
        name = name[: 255 - len(suffix)] + suffix
    return name


def stem(original_filename: str) -> str:
    """The name without folders or extension ("" when there is nothing left)."""
    return PurePath(original_filename.replace("\\", "/")).stem


def source_name(conversion_id) -> str:
    return f"sources/{conversion_id}"


def output_name(conversion_id, attempt: int) -> str:
    # One name per attempt: a late finish of an earlier attempt can never overwrite or delete a retry's MP3.
    return f"mp3/{conversion_id}-{attempt}{MP3.extension}"


def track_name(conversion_id, attempt: int, number: int) -> str:
    """A chapter's MP3, one name per attempt like the single MP3's."""
    return f"tracks/{conversion_id}-{attempt}-{number:03d}{MP3.extension}"


def safe_part(text: str, *, limit: int = 120) -> str:
    """Text made safe as part of a file name on any system: no folders, no characters Windows refuses, no control
    characters, not ending in a dot or space, at most `limit` characters."""
    text = unicodedata.normalize("NFC", text or "")
    text = re.sub(r'[\x00-\x1f\x7f<>:"/\\|?*]', " ", text)
    text = re.sub(r"\s+", " ", text).strip()[:limit].rstrip(". ")
    return text


def track_download_name(number: int, title: str, total: int) -> str:
    """`01 - Intro.mp3`: the track number (as wide as the total needs, at least two digits), then its title."""
    width = max(2, len(str(total)))
    title = safe_part(title)
    return f"{number:0{width}d} - {title}{MP3.extension}" if title else f"{number:0{width}d}{MP3.extension}"


def download_name(original_filename: str, extension: str = MP3.extension) -> str:
    """The download's name: the original name's stem with the output's extension (or `extension`)."""
    return f"{stem(original_filename) or 'audio'}{extension}"
