"""One ZIP of several finished MP3s, streamed as it is made: no temporary file, no archive in memory. Either a user's
chosen jobs (`conversions_zip`) or one split job's tracks with an .m3u playlist (`tracks_zip`).

Each MP3 is read from the file storage chunk by chunk, through the Storage API only (a folder, GridFS or S3 alike),
when the archive reaches it. MP3 does not compress, so every entry is stored as it is; with every MP3's size known
up front the archive's own size is known too (`len(archive)`), so a download can say its Content-Length.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import PurePath
from typing import IO

from django.core.files.storage import Storage
from django.utils import timezone
from zipstream import ZIP_STORED, ZipStream

from mp3converter.errors import ConversionExpired, InvalidRequest, InvalidState, NotFound

from .filenames import download_name, track_download_name
from .models import Conversion, Track
from .selectors import conversion_map

# The most conversions one ZIP may hold: a request names each of them, and each is a stored file to read.
ZIP_MAX_CONVERSIONS = 100
ZIP_CHUNK_SIZE = 64 * 1024
NO_IDS = "Choose at least one conversion."
TOO_MANY_IDS = f"At most {ZIP_MAX_CONVERSIONS} conversions fit in one ZIP."


class StoredFileChunks:
    """A stored file's bytes, chunk by chunk: opened when the first chunk is asked for, closed after the last one,
    or by `close()` when the archive is abandoned half-way (a client that went away)."""

    def __init__(self, storage: Storage, name: str, chunk_size: int = ZIP_CHUNK_SIZE) -> None:
        self.storage = storage
        self.name = name
        self.chunk_size = chunk_size
        self._file: IO[bytes] | None = None
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        try:
            if self._file is None:
                self._file = self.storage.open(self.name, "rb")
            chunk = self._file.read(self.chunk_size)
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        self._done = True
        if self._file is not None:
            file, self._file = self._file, None
            file.close()


class MP3Zip(ZipStream):
    """A stored (uncompressed) ZipStream of stored files that closes whatever it opened when it is closed.

    Django's StreamingHttpResponse calls `close()` when the response ends, whether or not it was read to the end.
    """

    def __init__(self, *, sized: bool) -> None:
        super().__init__(compress_type=ZIP_STORED, sized=sized)
        self._sources: list[StoredFileChunks] = []

    def add_stored(self, *, storage: Storage, name: str, size: int | None, arcname: str) -> None:
        source = StoredFileChunks(storage, name)
        self._sources.append(source)
        self.add(source, arcname, size=size)

    def close(self) -> None:
        for source in self._sources:
            source.close()


def tracks_playlist(tracks: Sequence[Track], names: Sequence[str]) -> bytes:
    """An extended M3U playlist of the tracks, by their names in the ZIP (beside it), in order; UTF-8."""
    lines = ["#EXTM3U"]
    for track, name in zip(tracks, names, strict=True):
        title = " ".join(track.title.split())  # one line each
        lines += [f"#EXTINF:{round(track.duration_seconds)},{title}", name]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def tracks_zip(*, conversion: Conversion) -> tuple[str, MP3Zip]:
    """A split job's tracks as one ZIP, `01 - Title.mp3`, … and `<name>.m3u`: its download name and the archive.
    InvalidState (409) while the job is not done."""
    tracks = list(conversion.tracks.all())
    if conversion.status != Conversion.Status.DONE or not tracks:
        raise InvalidState(f"The tracks are not ready: the conversion is {conversion.status}.")
    archive = MP3Zip(sized=True)
    names = zip_entry_names([track_download_name(track.number, track.title, len(tracks)) for track in tracks])
    for track, name in zip(tracks, names, strict=True):
        archive.add_stored(storage=track.mp3.storage, name=track.mp3.name, size=track.size, arcname=name)
    archive.add(tracks_playlist(tracks, names), download_name(conversion.original_filename, ".m3u"))
    return download_name(conversion.original_filename, ".zip"), archive


def zip_entry_names(names: Sequence[str]) -> list[str]:
    """The names as given, a later duplicate getting ` (2)`, ` (3)`, … before its extension. Names that differ only
    in case count as duplicates: they would overwrite each other when unpacked on Windows or macOS."""
    taken: set[str] = set()
    unique = []
    for name in names:
        path = PurePath(name)
        candidate, number = name, 1
        while candidate.casefold() in taken:
            number += 1
            candidate = f"{path.stem} ({number}){path.suffix}"
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


def zip_filename() -> str:
    """`mp3s-20260101T120000Z.zip`: when it was made, in UTC."""
    return f"mp3s-{timezone.now().astimezone(UTC):%Y%m%dT%H%M%SZ}.zip"


def _not_ready(conversion: Conversion) -> str:
    state = f"is {conversion.status}" if conversion.status != Conversion.Status.DONE else "has no MP3"
    return f"{conversion.id} ({conversion.original_filename}) {state}"


def _job(found: dict[uuid.UUID, Conversion], conversion_id: str) -> Conversion | None:
    try:
        return found.get(uuid.UUID(conversion_id))
    except ValueError:
        return None


def conversions_zip(*, user, conversion_ids: Sequence[uuid.UUID | str]) -> tuple[str, MP3Zip]:
    """The user's done conversions as one ZIP of their MP3s, in the order asked for (each once): its download name and
    the archive, which reads nothing until it is iterated.

    Raises InvalidRequest (400) for no ids or more than ZIP_MAX_CONVERSIONS, NotFound (404) naming the ids that are not
    the user's conversions (unknown and another user's alike), ConversionExpired (410) naming those that expired,
    InvalidState (409) naming those that are not done.
    """
    asked = list(dict.fromkeys(str(conversion_id) for conversion_id in conversion_ids))
    if not asked:
        raise InvalidRequest(NO_IDS, field="ids")
    if len(asked) > ZIP_MAX_CONVERSIONS:
        raise InvalidRequest(f"{TOO_MANY_IDS} This asks for {len(asked)}.", field="ids")
    found = conversion_map(user=user, conversion_ids=asked)

    jobs = {conversion_id: _job(found, conversion_id) for conversion_id in asked}
    if missing := [conversion_id for conversion_id, conversion in jobs.items() if conversion is None]:
        raise NotFound(f"There is no conversion with the id {', '.join(missing)}.")
    # One entry per job, also when one id was written two ways.
    conversions = list({conversion.id: conversion for conversion in jobs.values()}.values())
    if expired := [c for c in conversions if c.status == Conversion.Status.EXPIRED]:
        raise ConversionExpired(
            "Expired conversions have no MP3 any more (their files were removed after the time this service keeps "
            "them): " + "; ".join(f"{c.id} ({c.original_filename})" for c in expired) + "."
        )
    if not_ready := [c for c in conversions if c.status != Conversion.Status.DONE or not _has_output(c)]:
        raise InvalidState("Only done conversions go into a ZIP: " + "; ".join(map(_not_ready, not_ready)) + ".")

    archive = MP3Zip(sized=all(conversion.mp3_size is not None for conversion in conversions))
    # A split job's tracks go in a folder of its name.
    names = zip_entry_names([
        download_name(conversion.original_filename, "") if conversion.is_split else conversion.mp3_filename
        for conversion in conversions
    ])
    for conversion, name in zip(conversions, names, strict=True):
        if not conversion.is_split:
            archive.add_stored(storage=conversion.mp3.storage, name=conversion.mp3.name, size=conversion.mp3_size,
                               arcname=name)
            continue
        for track in conversion.tracks.all():
            archive.add_stored(storage=track.mp3.storage, name=track.mp3.name, size=track.size,
                               arcname=f"{name}/{track.mp3_filename}")
    return zip_filename(), archive


def _has_output(conversion: Conversion) -> bool:
    return bool(conversion.tracks.all()) if conversion.is_split else bool(conversion.mp3)
