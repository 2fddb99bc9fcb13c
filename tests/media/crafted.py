"""Crafted inputs for the trust tests: manifests that point ffmpeg at another file or a URL, and audio whose size or
headers hide how long it lasts. All made here, from text or with the bundled ffmpeg.

- `manifest(kind, target)`: an HLS playlist, a DASH manifest, an ffconcat script or an SDP description whose media
  is `target` (a local path or an `http://` URL; SDP names a host and port).
- `http_server()`: a real local HTTP server that records every request, for the URLs the manifests name.
- `silent_flac(path, seconds)`: a FLAC of silence, a few KB a minute; `flac_header_claims(path, seconds)` then
  makes its header lie about the duration, or (None) leaves the duration out (ffmpeg then reports none).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .ffmpeg import ffmpeg_exe, run_ffmpeg

# kind -> (the name ffmpeg's demuxer for it goes by, the file extension it is known by)
MANIFESTS = {
    "hls": ("hls", ".m3u8"),
    "dash": ("dash", ".mpd"),
    "ffconcat": ("concat", ".ffconcat"),
    "sdp": ("sdp", ".sdp"),
}
FLAC_RATE = 8000


def manifest(kind: str, target: str) -> bytes:
    if kind == "hls":
        return (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n"
        ).encode()
    if kind == "dash":
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" '
            'minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">\n'
            ' <Period><AdaptationSet mimeType="audio/mp4">\n'
            '  <Representation id="audio" bandwidth="64000" codecs="mp4a.40.2">\n'
            f"   <BaseURL>{target}</BaseURL>\n"
            "  </Representation>\n"
            " </AdaptationSet></Period>\n"
            "</MPD>\n"
        ).encode()
    if kind == "ffconcat":
        return f"ffconcat version 1.0\nfile '{target}'\n".encode()
    if kind == "sdp":
        address = urlsplit(target)
        return (
            f"v=0\no=- 0 0 IN IP4 {address.hostname}\ns=holiday\nc=IN IP4 {address.hostname}\nt=0 0\n"
            f"m=audio {address.port} RTP/AVP 96\na=rtpmap:96 MPEG4-GENERIC/44100/2\n"
        ).encode()
    raise ValueError(f"unknown manifest kind {kind!r}; known: {', '.join(MANIFESTS)}")


def _streaminfo_total_samples(data: bytearray, total: int) -> None:
    """Set a FLAC's STREAMINFO total-samples field (36 bits, after rate, channels and bits per sample)."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must be the first metadata block"
    start = 8 + 13  # "fLaC", the block header, then 13 bytes of STREAMINFO before the field's byte
    value = int.from_bytes(data[start:start + 5], "big")
    value = (value & ~((1 << 36) - 1)) | total
    data[start:start + 5] = value.to_bytes(5, "big")


def silent_flac(path: Path, seconds: float) -> Path:
    """`seconds` of mono silence at 8 kHz as FLAC: about 2 KB a minute, whose header says how long it lasts."""
    run_ffmpeg(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"anullsrc=r={FLAC_RATE}:cl=mono", "-t", f"{seconds}", "-c:a", "flac", "-f", "flac",
         str(path)],
        f"generating {seconds} s of silent FLAC",
    )
    return path


def flac_header_claims(path: Path, seconds: float | None) -> Path:
    """Rewrite a FLAC made by silent_flac so its header claims `seconds` (None: no duration at all). ffmpeg's
    FLAC demuxer takes the duration from the header, and decodes every frame there is whatever it claims."""
    data = bytearray(path.read_bytes())
    _streaminfo_total_samples(data, 0 if seconds is None else round(seconds * FLAC_RATE))
    path.write_bytes(bytes(data))
    return path


class RecordingServer(ThreadingHTTPServer):
    """Answers every GET with a few bytes and records its path in `requests`."""

    daemon_threads = True

    def __init__(self):
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.server.requests.append(self.path)
        body = b"\0" * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
