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


def download_name(original_filename: str) -> str:
    """The download's name: the original name's stem with the output's extension."""
    return f"{stem(original_filename) or 'audio'}{MP3.extension}"
