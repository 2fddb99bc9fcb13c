"""P2, P3, P4, P6 and P7: the whole service, started by the bench as `make run` starts it (stack.py), measured
through its API like a client would."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from conversions import engine

from . import client
from .converters import cli_command
from .procstat import PeakRss, tree_cpu_seconds, tree_rss_kib, rss_kib
from .report import Row
from .stack import Stack

P2_FACTOR, P2_SLACK = 1.05, 0.3
WEB_GROWTH_MAX_MIB, CONVERTER_GROWTH_MAX_MIB = 32, 64
P4_SHARE_OF_CEILING = 0.95
P6_SHARE_OF_HEALTHZ, P6_P99_MAX_MS, P6_CLIENTS = 0.33, 150, 50
IDLE_CPU_MAX_PERCENT, IDLE_SECONDS = 3.0, 20.0
IDLE_MESSAGES_MAX = 10  # message files in the broker folder at once at idle: heartbeats on their way to Flower


# --- P2: job accepted -> done ----------------------------------------------------------------------------------------
def accepted_to_done(stack: Stack, source: Path, *, jobs: int) -> tuple[list[float], float]:
    """Each job from its creation (its row, written just before the 202) to its `finished_at`, both from the job
    itself: the service's own clock, which is this machine's. The status is polled only every 0.25 s to see that it
    is done; a poll every 20 ms took the converter's CPU away from it (each GET is a few ms of Python) and slowed
    what it timed. Before each job the plain ffmpeg CLI converts the same file, so the two are compared minute by
    minute (this machine's speed drifts over a run); returns the jobs' seconds and the CLI's median."""
    token = stack.token()
    seconds, cli = [], []
    for _ in range(jobs):
        with tempfile.TemporaryDirectory() as folder:
            started = time.monotonic()
            subprocess.run(cli_command(source, Path(folder) / "cli.mp3"), check=True)
            cli.append(time.monotonic() - started)
        sent = client.upload(stack.base_url, token, source)
        _, job = client.wait_done_job(stack.base_url, token, sent.conversion_id, every=0.25)
        seconds.append(_epoch(job["finished_at"]) - _epoch(sent.answer["created_at"]))
    return seconds, statistics.median(cli)


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def p2_row(label: str, timed: tuple[list[float], float]) -> Row:
    seconds, cli_seconds = timed
    limit = P2_FACTOR * cli_seconds + P2_SLACK
    median = statistics.median(seconds)
    return Row(f"**P2** accepted → done, {label}", seconds, "s", f"≤ {P2_FACTOR} × CLI + {P2_SLACK} s",
               f"{median:.2f} ≤ {limit:.2f}: CLI ({cli_seconds:.2f}) {median - cli_seconds:+.2f} s", median <= limit)


def p2_unavailable(label: str, why: str) -> Row:
    return Row(f"**P2** accepted → done, {label}", [], "s", f"≤ {P2_FACTOR} × CLI + {P2_SLACK} s", note=why)


# --- P3: a 2 GB upload -------------------------------------------------------------------------------------------------
def make_big_source(path: Path, gib: float) -> float:
    """A valid Matroska file of `gib` GiB: a 25 fps stream of 8 MiB random grey frames, stored as they are (no
    encoding, so it is written at disk speed), and a short AAC tone. Returns its seconds of audio."""
    frame = 4096 * 2048
    frames = int(gib * 2**30 / frame)
    seconds = frames / 25
    subprocess.run([
        engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "gray", "-s", "4096x2048", "-r", "25", "-i", "/dev/urandom",
        "-f", "lavfi", "-i", f"sine=f=440:sample_rate=44100:d={seconds}",
        "-frames:v", str(frames), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", f"file:{path}",
    ], check=True)
    return seconds


def big_upload(stack: Stack, source: Path) -> list[Row]:
    """Upload `source` once over a plain POST (and once over tus when the server speaks it), sampling the memory of
    each web process and of the convert worker's whole tree (its pool process and ffmpeg) against their idle size."""
    token = stack.token()
    web = [pid for pid in stack.pids("web")]
    converter = stack.processes["convert"].pid
    idle_web = {pid: rss_kib(pid) for pid in web}
    idle_converter = tree_rss_kib(converter)
    size_mib = source.stat().st_size / 2**20
    with PeakRss(web) as web_memory, PeakRss([converter], whole_tree=True) as converter_memory:
        sent = client.upload(stack.base_url, token, source)
        client.wait_done(stack.base_url, token, sent.conversion_id, every=0.2)
    web_growth = max((web_memory.peak[pid] - idle_web[pid]) / 1024 for pid in web)
    converter_growth = (converter_memory.peak[converter] - idle_converter) / 1024
    rows = [
        Row(f"**P3** {size_mib / 1024:.1f} GiB plain POST: web process growth (largest)", [web_growth], "MiB",
            f"≤ {WEB_GROWTH_MAX_MIB} MiB", f"{web_growth:.1f}", web_growth <= WEB_GROWTH_MAX_MIB),
        Row(f"**P3** {size_mib / 1024:.1f} GiB: converter growth (worker, pool, ffmpeg)", [converter_growth], "MiB",
            f"≤ {CONVERTER_GROWTH_MAX_MIB} MiB", f"{converter_growth:.1f}", converter_growth <= CONVERTER_GROWTH_MAX_MIB),
        Row("plain POST upload rate", [size_mib / sent.seconds], "MiB/s"),
    ]
    if not client.tus_available(stack.base_url, token):
        rows.insert(1, Row("**P3** tus upload: web process growth (largest)", [], "MiB", f"≤ {WEB_GROWTH_MAX_MIB} MiB",
                           note="not measured: no tus server at /api/uploads/ (OPTIONS gave no Tus-Version)"))
        return rows
    idle_web = {pid: rss_kib(pid) for pid in web}
    with PeakRss(web) as web_memory:
        seconds = client.tus_upload(stack.base_url, token, source)
    tus_growth = max((web_memory.peak[pid] - idle_web[pid]) / 1024 for pid in web)
    rows.insert(1, Row("**P3** tus upload: web process growth (largest)", [tus_growth], "MiB",
                       f"≤ {WEB_GROWTH_MAX_MIB} MiB", f"{tus_growth:.1f}", tus_growth <= WEB_GROWTH_MAX_MIB))
    rows.append(Row("tus upload rate", [size_mib / seconds], "MiB/s"))
    return rows


# --- P4: two converters against one -------------------------------------------------------------------------------------
def batch_seconds(stack: Stack, source: Path, *, jobs: int) -> float:
    """Wall seconds from the first upload's answer to the last job done, for `jobs` uploads sent at once."""
    token = stack.token()
    uploads = [client.upload(stack.base_url, token, source) for _ in range(jobs)]
    done = [client.wait_done(stack.base_url, token, sent.conversion_id, every=0.1) for sent in uploads]
    return max(done) - uploads[0].accepted_at


# --- P6: the job-status GET under load ----------------------------------------------------------------------------------
def status_under_load(stack: Stack, source: Path, *, rounds: int) -> list[Row]:
    """The job-status GET against `/healthz`, and against the same GET without credentials: a 401 that Django, DRF
    and the middleware answer alone, which is as fast as any API answer of this stack can be (the ceiling)."""
    token = stack.token()
    sent = client.upload(stack.base_url, token, source)
    client.wait_done(stack.base_url, token, sent.conversion_id)
    job = f"/api/conversions/{sent.conversion_id}/"
    health, floor, status = [], [], []
    for _ in range(rounds):  # interleaved: the three figures of a round are taken within half a minute
        health.append(client.hammer(stack.base_url, "/healthz", clients=P6_CLIENTS))
        floor.append(client.hammer(stack.base_url, job, clients=P6_CLIENTS, expect=401))
        status.append(client.hammer(stack.base_url, job, clients=P6_CLIENTS, token=token))
    # Each round's own ratio: the machine's speed drifts over a run, and both sides of a ratio drift together.
    shares = [s.rate / h.rate for s, h in zip(status, health)]
    floor_shares = [f.rate / h.rate for f, h in zip(floor, health)]
    share, floor_share = statistics.median(shares), statistics.median(floor_shares)
    p99 = statistics.median(run.p99_ms for run in status)
    errors = sum(run.errors for run in status + health + floor)
    return [
        Row(f"`/healthz`, {P6_CLIENTS} clients", [run.rate for run in health], "req/s"),
        Row(f"job GET without credentials (401: Django, DRF, middleware), {P6_CLIENTS} clients",
            [run.rate for run in floor], "req/s", "report", f"{floor_share:.2f} × `/healthz` (ceiling)"),
        Row(f"job-status GET, {P6_CLIENTS} clients", [run.rate for run in status], "req/s"),
        Row("**P6** job-status GET / `/healthz`, throughput", shares, "×",
            f"≥ {P6_SHARE_OF_HEALTHZ}", f"{share:.2f}", share >= P6_SHARE_OF_HEALTHZ),
        Row("**P6** job-status GET: p99 latency", [run.p99_ms for run in status], "ms", f"≤ {P6_P99_MAX_MS} ms",
            f"{p99:.0f}", p99 <= P6_P99_MAX_MS),
        Row("**P6** errors, all three", [float(errors)], "", "0", str(errors), errors == 0),
    ]


# --- P7: the idle cost of `make run` ------------------------------------------------------------------------------------
def idle_cost(stack: Stack) -> list[Row]:
    roots = [process.pid for process in stack.processes.values()]
    messages_before = most = stack.broker_messages()
    cpu_before, started = tree_cpu_seconds(roots), time.monotonic()
    # The measurement itself: the stack left alone, its broker folder looked at twice a second (a listing).
    while (left := IDLE_SECONDS - (time.monotonic() - started)) > 0:
        time.sleep(min(0.5, left))
        most = max(most, stack.broker_messages())
    percent = 100 * (tree_cpu_seconds(roots) - cpu_before) / (time.monotonic() - started)
    messages_after, files = stack.broker_messages(), stack.broker_files()
    workers = stack.flower_json("/api/workers?refresh=1") or {}
    tasks = stack.flower_json("/api/tasks") or {}
    return [
        Row(f"**P7** `make run` idle, {IDLE_SECONDS:.0f} s: CPU (all roles)", [percent], "% of a core",
            f"≤ {IDLE_CPU_MAX_PERCENT} %", f"{percent:.2f}", percent <= IDLE_CPU_MAX_PERCENT),
        # Bounded, not empty: a heartbeat on its way to Flower's event queue is a file until Flower reads it.
        Row(f"**P7** broker folder: message files over {IDLE_SECONDS:.0f} s idle (most at once)", [float(most)],
            "files", f"≤ {IDLE_MESSAGES_MAX}", f"{messages_before} → {messages_after}, at most {most} "
            f"({files} files in all)", most <= IDLE_MESSAGES_MAX),
        Row("Flower: workers and tasks it shows", [float(len(workers))], "workers", "report",
            f"{len(workers)} workers, {len(tasks)} tasks"),
    ]
