"""The bench's clients of the API: a streamed multipart upload (a 2 GB file never sits in the bench's memory either),
the job-status poll, a tus upload through tuspy, and the 50-connection load generator.

The load generator is one asyncio process speaking HTTP/1.1 with keep-alive over raw sockets: a few microseconds
of Python per request, so on two cores it leaves the server the CPU it needs (an HTTP library per request would
measure the client, not the server).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


def _connection(base_url: str, timeout: float = 600) -> http.client.HTTPConnection:
    host, port = base_url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


@dataclass
class Upload:
    conversion_id: str
    status: int
    accepted_at: float  # time.monotonic() when the POST's answer arrived
    seconds: float  # from the first byte sent to the answer
    size: int
    answer: dict


def upload(base_url: str, token: str, source: Path, fields: dict[str, str] | None = None) -> Upload:
    """POST /api/conversions/ with the file streamed from disk as multipart/form-data."""
    boundary = secrets.token_hex(16)
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (fields or {}).items()
    ) + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{source.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = source.stat().st_size
    connection = _connection(base_url)
    started = time.monotonic()
    connection.putrequest("POST", "/api/conversions/")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + size + len(tail)))
    connection.endheaders()
    connection.send(head)
    with source.open("rb") as file:
        while chunk := file.read(CHUNK):
            connection.send(chunk)
    connection.send(tail)
    response = connection.getresponse()
    body = response.read()
    accepted_at = time.monotonic()
    connection.close()
    answer = json.loads(body or b"{}")
    if response.status not in (201, 202):
        raise RuntimeError(f"bench: upload refused with {response.status}: {body[:500]!r}")
    return Upload(answer["id"], response.status, accepted_at, accepted_at - started, size, answer)


def wait_done(base_url: str, token: str, conversion_id: str, *, timeout: float = 900, every: float = 0.02) -> float:
    """Poll the job's status every 20 ms until it is done; time.monotonic() of the first answer that says so."""
    return wait_done_job(base_url, token, conversion_id, timeout=timeout, every=every)[0]


def wait_done_job(base_url: str, token: str, conversion_id: str, *, timeout: float = 900,
                  every: float = 0.02) -> tuple[float, dict]:
    """Poll the job's status every `every` seconds until it is done: time.monotonic() of the first answer that says
    so, and the job as that answer shows it."""
    connection = _connection(base_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            connection.request("GET", f"/api/conversions/{conversion_id}/",
                               headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            response = connection.getresponse()
            job = json.loads(response.read())
            if job.get("status") == "done":
                return time.monotonic(), job
            if job.get("status") in ("failed", "cancelled"):
                raise RuntimeError(f"bench: job {conversion_id} {job['status']}: {job.get('error')}")
            time.sleep(every)
    finally:
        connection.close()
    raise RuntimeError(f"bench: job {conversion_id} not done after {timeout:.0f} s")


def tus_available(base_url: str, token: str) -> bool:
    """The server speaks tus when OPTIONS /api/uploads/ answers with the versions it supports (Tus-Version, which
    the tus 1.0 protocol requires on that answer)."""
    connection = _connection(base_url, timeout=10)
    try:
        connection.request("OPTIONS", "/api/uploads/", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        return response.status < 300 and "1.0.0" in (response.getheader("Tus-Version") or "")
    except OSError:
        return False
    finally:
        connection.close()


def tus_upload(base_url: str, token: str, source: Path, chunk_mib: int = 64) -> float:
    """Upload `source` with tuspy, the official Python client, in chunks under a 100 MB proxy cap; seconds taken."""
    from tusclient import client as tus

    uploader = tus.TusClient(f"{base_url}/api/uploads/", headers={"Authorization": f"Bearer {token}"}).uploader(
        str(source), chunk_size=chunk_mib * CHUNK, metadata={"filename": source.name}
    )
    started = time.monotonic()
    uploader.upload()
    return time.monotonic() - started


# --- the load generator ----------------------------------------------------------------------------------------------
@dataclass
class Load:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


async def _client(host: str, port: int, request: bytes, stop_at: float, load: Load, expect: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            writer.write(request)
            status_line = await reader.readline()
            length, keep_alive, chunked = 0, True, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    chunked = value == "chunked"
                elif name == "connection" and value == "close":
                    keep_alive = False
            if chunked:
                while size := int((await reader.readline()).split(b";")[0], 16):
                    await reader.readexactly(size + 2)
                await reader.readline()  # the CRLF after the last, empty chunk
            else:
                await reader.readexactly(length)
            load.latencies.append(time.monotonic() - sent)
            load.requests += 1
            if not status_line.startswith((b"HTTP/1.1 " + expect, b"HTTP/1.0 " + expect)):
                load.errors += 1
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        load.errors += 1
    finally:
        writer.close()


def hammer(base_url: str, path: str, *, clients: int = 50, seconds: float = 6.0, token: str = "",
           warmup: float = 1.0, expect: int = 200) -> Load:
    """`clients` keep-alive connections sending GET `path` back to back for `seconds` (after `warmup`); an answer
    with another status than `expect` counts as an error."""
    host, port = base_url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n{auth}\r\n").encode()

    async def run(duration: float) -> Load:
        load = Load(0, 0, duration, [])
        stop_at = time.monotonic() + duration
        await asyncio.gather(*(_client(host, int(port), request, stop_at, load, str(expect).encode()) for _ in range(clients)))
        return load

    if warmup:
        asyncio.run(run(warmup))
    return asyncio.run(run(seconds))
