"""Hostile uploads through both upload endpoints: the native `POST /api/conversions/` and the classic `POST /upload`.

Every upload is a raw multipart body built here, so the file name in the part header is exactly what a hostile
client sends (Django's test client would strip directories from it before it ever reached the server).

What each upload must get: the right 4xx with a clear message, or an accepted job that ends with a status (and
`error.code` when it fails); never a 5xx. A refused upload leaves no row and no stored file; no upload writes a
file named after itself anywhere (storage, the upload temp dir, the workers' temp dirs, traversal targets); every
download name is safe to put in a Content-Disposition header.
"""

import os
import random
import re
import struct
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from conversions import engine
from conversions.models import Conversion
from tests.media import probe_output
from tests.utils import stored_files, wait_for

ROOT = Path(__file__).resolve().parents[2]
APIS = ("native", "classic")
UPLOAD_URL = {"native": "/api/conversions/", "classic": "/upload"}
BOUNDARY = "----mp3converter-security-boundary-7f3a"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STORED_NAME = re.compile(rf"^(sources/{UUID}|mp3/{UUID}-\d+\.mp3)$")
FINISHED = (Conversion.Status.DONE, Conversion.Status.FAILED, Conversion.Status.CANCELLED)


# --- building requests -----------------------------------------------------------------------------------------
def part_disposition(field: str, filename: str | None) -> str:
    disposition = f'form-data; name="{field}"'
    if filename is None:
        return disposition
    if all(ch.isprintable() for ch in filename) and '"' not in filename and "\\" not in filename:
        # What curl and browsers send: the name as UTF-8 inside a quoted string.
        return f'{disposition}; filename="{filename}"'
    # Control characters cannot appear raw in a header line: RFC 2231 / RFC 5987 percent-encoding carries them.
    return f"{disposition}; filename*=UTF-8''{quote(filename, safe='')}"


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = BOUNDARY) -> tuple[bytes, str]:
    """A raw multipart/form-data body from (field, filename or None, content) parts, and its Content-Type."""
    body = b""
    for field, filename, content in parts:
        body += f"--{boundary}\r\nContent-Disposition: {part_disposition(field, filename)}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_raw(api: str, user, body: bytes, content_type: str):
    return Client().generic(
        "POST", UPLOAD_URL[api], data=body, content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}",
    )


def upload_bytes(api: str, user, filename: str, content: bytes):
    body, content_type = multipart(("file", filename, content))
    return post_raw(api, user, body, content_type)


def accepted_id(api: str, response) -> str:
    """The new job's id from a successful upload on either API."""
    if api == "native":
        assert response.status_code == 202, (response.status_code, response.content)
        return response.json()["id"]
    assert response.status_code == 200, (response.status_code, response.content)
    text = response.content.decode()
    match = re.fullmatch(rf"success! fid=({UUID})", text)
    assert match, text
    return match.group(1)


def assert_refused(api: str, response, status: int, *, code: str | None = None, message: str | None = None,
                   field: str | None = None):
    """A 4xx with a clear message: JSON `{code, detail}` (or a field error) natively, plain text on the classic API."""
    assert response.status_code == status, (response.status_code, response.content)
    if api == "native":
        body = response.json()
        if field is not None:
            assert list(body) == [field], body
            assert message in body[field], body
        else:
            assert body.get("code") == code, body
            assert body["detail"] == message, body
    else:
        assert response["Content-Type"].startswith("text/plain"), response["Content-Type"]
        assert response.content.decode() == message


# --- what is kept where ----------------------------------------------------------------------------------------
def files_under(folder: Path) -> list[Path]:
    return [path for path in Path(folder).rglob("*") if path.is_file()] if Path(folder).exists() else []


@pytest.fixture
def sample(media):
    return media("mp4_aac").read_bytes()


# --- the corpus ------------------------------------------------------------------------------------------------
def random_mp4() -> bytes:
    # Seeded: fresh random bytes now and then hold enough MPEG sync words for ffmpeg to read them as MP3.
    return random.Random(8675309).randbytes(64 * 1024)


HUGE_TICKS = 0x7FFF0000  # at the movie's 44.1 kHz timescale: about 48 694 s (13.5 hours)


def with_huge_duration(mp4: bytes) -> bytes:
    """The mp4 with headers that claim ~13.5 hours; its samples still hold 2 s of audio.

    Patching mvhd alone does not change what ffmpeg reports: it derives a track's duration from the sample table
    (stts) and the edit list (elst), and the file's from its tracks. So the audio track's stts (last sample's
    delta), elst (segment duration) and mdhd, and the mvhd, all claim the huge duration. All are version-0 boxes
    written by ffmpeg's mp4 muxer; offsets below are from the box type (`pos`), whose payload starts at pos + 4.
    """
    data = bytearray(mp4)

    def box(name: bytes, start: int = 0) -> int:
        pos = data.find(name, start)
        assert pos > 0, name
        return pos

    mvhd = box(b"mvhd")
    assert data[mvhd + 4] == 0  # version 0: flags(3) created(4) modified(4) timescale(4) duration(4)
    struct.pack_into(">I", data, mvhd + 4 + 16, HUGE_TICKS)
    audio_trak = data.rfind(b"trak", 0, box(b"soun"))
    mdhd = box(b"mdhd", audio_trak)
    assert data[mdhd + 4] == 0
    struct.pack_into(">I", data, mdhd + 4 + 16, HUGE_TICKS)
    elst = box(b"elst", audio_trak)  # version 0: flags(3) entry_count(4) segment_duration(4) ...
    assert data[elst + 4] == 0
    struct.pack_into(">I", data, elst + 4 + 8, HUGE_TICKS)
    stts = box(b"stts", audio_trak)  # version 0: flags(3) entry_count(4) then (count, delta) pairs
    entries = struct.unpack_from(">I", data, stts + 8)[0]
    struct.pack_into(">I", data, stts + 12 + (entries - 1) * 8 + 4, HUGE_TICKS)
    return bytes(data)


def test_the_crafted_mp4_claims_a_huge_duration(sample, tmp_path):
    # Guards the test below: the container really claims hours, though ffmpeg can still open it.
    path = tmp_path / "huge.mp4"
    path.write_bytes(with_huge_duration(sample))
    probed = probe_output(path)
    assert probed["duration"] > 13 * 3600
    assert [stream["codec"] for stream in probed["audio"]] == ["aac"]
    assert engine.probe(path).duration > 13 * 3600


REFUSED_CONTENT = {
    # kind: (file name, content(media) -> bytes, status on both APIs; the code is unsupported_media)
    "random bytes": ("random.mp4", lambda media: random_mp4(), 415),
    "truncated mp4": ("truncated.mp4", lambda media: media("truncated_mp4").read_bytes(), 415),
    "png": ("picture.png", lambda media: media("png").read_bytes(), 415),
    "text": ("notes.txt", lambda media: media("text").read_bytes(), 415),
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kind", REFUSED_CONTENT)
def test_unusable_content_is_refused_and_nothing_is_kept(db, user, media, upload_tmp, api, kind):
    filename, content, status = REFUSED_CONTENT[kind]
    before = stored_files()
    response = upload_bytes(api, user, filename, content(media))
    assert_refused(api, response, status, code="unsupported_media", message=engine.UnsupportedMedia.message)
    assert len(engine.UnsupportedMedia.message) > 20  # a sentence a person understands, not a bare code
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


@pytest.mark.parametrize("api", APIS)
def test_zero_byte_file_is_refused_with_400(db, user, upload_tmp, api):
    before = stored_files()
    response = upload_bytes(api, user, "empty.mp4", b"")
    if api == "native":
        assert_refused(api, response, 400, field="file", message="The submitted file is empty.")
    else:
        assert_refused(api, response, 400, message="the submitted file is empty")
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


# --- request shape ---------------------------------------------------------------------------------------------
def test_classic_upload_with_two_file_parts_is_refused(db, user, sample, upload_tmp):
    before = stored_files()
    body, content_type = multipart(("file", "one.mp4", sample), ("file", "two.mp4", sample))
    assert_refused("classic", post_raw("classic", user, body, content_type), 400, message="exactly 1 file required")
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


def test_native_upload_with_two_file_parts_is_refused(db, user, sample, media, upload_tmp):
    # Two `file` parts are ambiguous: rather than convert one of them silently, the native API refuses the request.
    before = stored_files()
    body, content_type = multipart(("file", "one.mp4", sample), ("file", "two.wav", media("wav").read_bytes()))
    response = post_raw("native", user, body, content_type)
    assert_refused("native", response, 400, field="file", message="Send exactly one file.")
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "padding",
    [
        pytest.param(3 * 1024 * 1024, id="declared-length-over-limit"),  # refused before a byte is read
        pytest.param(1536 * 1024, id="over-limit-while-streaming"),  # within the header allowance: caught per chunk
    ],
)
def test_upload_over_the_limit_is_refused_while_streaming(db, user, sample, settings, upload_tmp, api, padding):
    settings.MAX_UPLOAD_MB = 1
    before = stored_files()
    response = upload_bytes(api, user, "big.mp4", sample + b"\0" * padding)
    assert_refused(api, response, 413, code="file_too_large", message="The file is larger than the 1 MB limit.")
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


@pytest.mark.parametrize("api", APIS)
def test_limit_counts_every_file_part_and_keeps_no_temp_file(db, user, sample, settings, upload_tmp, api):
    # The first part completes (a temp file exists), the second passes the limit: both temp files must go.
    settings.MAX_UPLOAD_MB = 1
    body, content_type = multipart(("file", "small.mp4", sample), ("other", "big.mp4", b"\0" * (1100 * 1024)))
    response = post_raw(api, user, body, content_type)
    assert_refused(api, response, 413, code="file_too_large", message="The file is larger than the 1 MB limit.")
    assert Conversion.objects.count() == 0
    assert files_under(upload_tmp) == []


WRONG_CONTENT_TYPES = {
    # content type: (native status, native detail, classic status, classic body)
    "application/json": (415, 'Unsupported media type "application/json" in request.', 400, "exactly 1 file required"),
    "text/plain": (415, 'Unsupported media type "text/plain" in request.', 400, "exactly 1 file required"),
    "multipart/form-data": (400, "Multipart form parse error - Invalid boundary in multipart: None", 400,
                            "exactly 1 file required"),
    "multipart/form-data; boundary=": (400, "Multipart form parse error - Invalid boundary in multipart: ", 400,
                                       "exactly 1 file required"),
    "multipart/form-data; boundary=not-the-one-used": (400, None, 400, "exactly 1 file required"),
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("content_type", WRONG_CONTENT_TYPES)
def test_a_multipart_body_with_the_wrong_content_type_is_a_4xx(db, user, sample, upload_tmp, api, content_type):
    native_status, native_detail, classic_status, classic_body = WRONG_CONTENT_TYPES[content_type]
    body, _ = multipart(("file", "clip.mp4", sample))
    before = stored_files()
    response = post_raw(api, user, body, content_type)
    if api == "native":
        assert response.status_code == native_status, (response.status_code, response.content)
        if native_detail is None:  # the body parses as a multipart with no parts at all
            assert response.json() == {"file": ["No file was submitted: send a file, or a source_url to import it from."]}
        else:
            assert response.json() == {"detail": native_detail}
    else:
        assert_refused(api, response, classic_status, message=classic_body)
    assert Conversion.objects.count() == 0
    assert stored_files() == before
    assert files_under(upload_tmp) == []


# --- accepted uploads: jobs through the real workers -----------------------------------------------------------
def wait_finished(conversion_id: str, timeout: float = 90) -> Conversion:
    return wait_for(
        lambda: Conversion.objects.filter(pk=conversion_id, status__in=FINISHED).first(),
        timeout=timeout, message=f"conversion {conversion_id} to finish",
    )


def download(api: str, user, conversion_id: str):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}
    if api == "native":
        return Client().get(f"/api/conversions/{conversion_id}/download/", **auth)
    return Client().get("/download", {"fid": conversion_id}, **auth)


def disposition_filename(header: str) -> str:
    """The file name of an `attachment` Content-Disposition, checking the header cannot be broken out of."""
    assert "\r" not in header and "\n" not in header, repr(header)
    quoted = re.fullmatch(r'attachment; filename="((?:[^"\\\x00-\x1f\x7f]|\\.)*)"', header)
    if quoted:
        return re.sub(r"\\(.)", r"\1", quoted.group(1))
    # RFC 5987 ext-value: only attr-chars and percent-escapes, so no quote, separator or space can appear raw.
    extended = re.fullmatch(r"attachment; filename\*=utf-8''([A-Za-z0-9!#$&+\-.^_`|~%]+)", header)
    assert extended, repr(header)
    return unquote(extended.group(1), errors="strict")


def assert_safe_download(response, expected_name: str) -> bytes:
    assert response.status_code == 200, (response.status_code, getattr(response, "content", b""))
    assert response["Content-Type"] == "audio/mpeg"
    name = disposition_filename(response["Content-Disposition"])
    assert "/" not in name and "\\" not in name and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
    assert name == expected_name
    return b"".join(response.streaming_content)


def id3v2_title(mp3: bytes) -> str:
    """The TIT2 frame of an ID3v2.3 tag, read directly: `ffmpeg -i` prints at most 255 bytes of a tag value."""
    assert mp3[:3] == b"ID3" and mp3[3] == 3, mp3[:5]
    frame = mp3.find(b"TIT2", 10)
    assert frame > 0
    size = int.from_bytes(mp3[frame + 4:frame + 8], "big")  # v2.3: a plain 32-bit size, after it 2 flag bytes
    encoding, text = mp3[frame + 10], mp3[frame + 11:frame + 10 + size]
    return text.decode({0: "latin-1", 1: "utf-16", 3: "utf-8"}[encoding]).rstrip("\0")


def worker_tmpdirs(workers) -> list[Path]:
    return [worker.tmpdir for worker in workers.values() if worker.tmpdir is not None]


HOSTILE_NAMES = {
    # id: (name sent, the stored original_filename, the download name)
    "traversal": ("../../etc/passwd.mp4", "passwd.mp4", "passwd.mp3"),
    "option-like": ("-i evil.mp4", "-i evil.mp4", "-i evil.mp3"),
    "shell": ("$(reboot).mp4", "$(reboot).mp4", "$(reboot).mp3"),
    "300-unicode": ("é" * 300 + ".mp4", "é" * 251 + ".mp4", "é" * 251 + ".mp3"),
    "newlines": ("a\nb\r\nc.mp4", "abc.mp4", "abc.mp3"),
    "header-injection": ('say "hi"; filename=evil.sh.mp4', 'say "hi"; filename=evil.sh.mp4',
                         'say "hi"; filename=evil.sh.mp3'),
}
# Markers of each hostile name: no file whose name contains one may appear anywhere this test can look.
MARKERS = ("passwd.mp", "evil.mp", "evil.sh", "reboot", "$(", "éé", "abc.mp")


def assert_no_file_named_after_uploads(folders: list[Path]) -> None:
    for folder in folders:
        for path in files_under(folder):
            assert not any(marker in path.name for marker in MARKERS), path
    # Where a traversal would have landed, from every folder that handles uploads and from the working directory.
    bases = [Path(django_settings.MEDIA_ROOT), Path(django_settings.MEDIA_ROOT) / "sources",
             Path(django_settings.MEDIA_ROOT) / "mp3", Path(tempfile.gettempdir()), ROOT, *folders]
    for base in bases:
        assert not os.path.lexists(os.path.normpath(base / "../../etc/passwd.mp4")), base
    assert not os.path.lexists("/etc/passwd.mp4")
    assert not os.path.lexists("/tmp/etc/passwd.mp4")
    for folder in (Path(tempfile.gettempdir()), Path("/tmp"), ROOT):  # top level only: these are shared
        for name in os.listdir(folder):
            assert not any(marker in name for marker in MARKERS), folder / name


@pytest.mark.e2e
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", HOSTILE_NAMES)
def test_hostile_file_names_convert_and_are_cleaned(live_workers, user, sample, upload_tmp, tmp_path, api, case):
    sent, stored_name, download_name = HOSTILE_NAMES[case]
    conversion_id = accepted_id(api, upload_bytes(api, user, sent, sample))
    conversion = Conversion.objects.get(pk=conversion_id)

    name = conversion.original_filename
    assert name == stored_name
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not re.search(r"[\x00-\x1f\x7f]", name)
    assert len(name) <= 255 and name.endswith(".mp4")
    assert STORED_NAME.match(conversion.source.name), conversion.source.name  # storage never uses the name

    finished = wait_finished(conversion_id)
    assert finished.status == Conversion.Status.DONE, (finished.error_code, finished.error_message)
    assert STORED_NAME.match(finished.mp3.name), finished.mp3.name
    assert finished.mp3_filename == download_name
    mp3 = tmp_path / "out.mp3"
    body = assert_safe_download(download(api, user, conversion_id), download_name)
    mp3.write_bytes(body)
    assert probe_output(mp3)["duration"] == pytest.approx(2.0, abs=0.1)
    # The name reached ffmpeg as data only: the default title tag is its stem, verbatim (at most 200 characters).
    assert id3v2_title(body) == Path(stored_name).stem[: engine.TAG_MAX_LENGTH]

    # The convert worker removes its temporary directory once the job is finished.
    tmpdirs = worker_tmpdirs(live_workers)
    wait_for(lambda: not any(files_under(folder) for folder in tmpdirs), timeout=30,
             message="the workers' temp dirs to be empty")
    assert files_under(upload_tmp) == []
    assert_no_file_named_after_uploads([Path(django_settings.MEDIA_ROOT), upload_tmp, *tmpdirs])


@pytest.mark.e2e
@pytest.mark.parametrize("api", APIS)
def test_mp4_claiming_a_huge_duration_converts_what_it_really_holds(live_workers, user, sample, upload_tmp,
                                                                     tmp_path, settings, api):
    # The probe believes the headers (13.5 hours) and, under a limit above that, accepts the upload; the conversion
    # decodes the 2 s the samples hold, and the job ends done with the real duration: no hang, no 5xx, no bogus
    # duration. (Under the default limit the upload is refused: tests/security/test_manifests.py.)
    settings.MAX_DURATION_MINUTES = 14 * 60
    conversion_id = accepted_id(api, upload_bytes(api, user, "huge.mp4", with_huge_duration(sample)))
    finished = wait_finished(conversion_id, timeout=60)
    assert finished.status == Conversion.Status.DONE, (finished.error_code, finished.error_message)
    assert finished.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert finished.progress == 100
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(assert_safe_download(download(api, user, conversion_id), "huge.mp3"))
    assert probe_output(mp3)["duration"] == pytest.approx(2.0, abs=0.1)
    assert files_under(upload_tmp) == []
