"""`make bench`: the conversion engine against the plain ffmpeg CLI and the classic MoviePy path.

    python -m conversions.bench [--minutes 10] [--repeats 5]

Generates a stereo AAC video (10 minutes by default), then converts it to MP3 (LAME VBR -V 2, 44.1 kHz,
stereo) three ways, interleaved, several times:

- engine:  conversions.engine.convert(), as the convert worker runs it (probe, then one ffmpeg process);
- cli:     the same ffmpeg binary, by hand, with identical output settings;
- moviepy: the classic path, MoviePy 2's VideoFileClip(src).audio.write_audiofile(dst) with matching settings.

Each run is a separate process. Its time is measured inside that process around the conversion only (the
engine's and MoviePy's imports are not counted) and its peak memory is the largest total RSS of its whole
process tree, sampled from /proc. The table shows medians, and the ratios compare medians from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from conversions import engine

VBR_QUALITY = 2
SAMPLE_RATE = 44100
# Targets from the issue that asked for this benchmark.
ENGINE_OVER_CLI_MAX = 1.05
MOVIEPY_OVER_ENGINE_MIN = 1.15


def make_source(path: Path, minutes: float) -> None:
    """A small-picture H.264 video with a stereo AAC track of a tone over pink noise (not trivially compressible)."""
    seconds = str(minutes * 60)
    command = [
        engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=15:d={seconds}",
        "-f", "lavfi", "-i", f"sine=f=330:sample_rate={SAMPLE_RATE}:d={seconds}",
        "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.08:r={SAMPLE_RATE}:d={seconds}",
        "-filter_complex", "[1:a][2:a]amix=inputs=2:duration=shortest,pan=stereo|c0=c0|c1=0.8*c0[a]",
        "-map", "0:v", "-map", "[a]",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "160k", "-shortest",
        f"file:{path}",
    ]
    subprocess.run(command, check=True)


def cli_command(source: Path, target: Path) -> list[str]:
    """What a person would type for the same output: first audio track, LAME -V 2, 44.1 kHz, no video."""
    return [
        engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-i", f"file:{source}", "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-c:a", "libmp3lame", "-q:a", str(VBR_QUALITY), "-ar", str(SAMPLE_RATE), "-f", "mp3", f"file:{target}",
    ]


# --- one measured conversion, each in its own process --------------------------------------------------------------
def _run_engine(source: Path, target: Path) -> None:
    engine.convert(source, target, options=engine.OutputOptions(vbr_quality=VBR_QUALITY, sample_rate=SAMPLE_RATE))


def _run_cli(source: Path, target: Path) -> None:
    subprocess.run(cli_command(source, target), check=True)


def _run_moviepy(source: Path, target: Path) -> None:
    from moviepy import VideoFileClip

    clip = VideoFileClip(str(source))
    try:
        clip.audio.write_audiofile(
            str(target), fps=SAMPLE_RATE, codec="libmp3lame", ffmpeg_params=["-q:a", str(VBR_QUALITY)], logger=None
        )
    finally:
        clip.close()


RUNNERS = {"engine": _run_engine, "cli": _run_cli, "moviepy": _run_moviepy}


def _child_main(path_name: str, source: str, target: str) -> None:
    runner = RUNNERS[path_name]
    if path_name == "moviepy":
        import moviepy  # noqa: F401  (import cost is not part of the conversion)
    started = time.perf_counter()
    runner(Path(source), Path(target))
    print(json.dumps({"seconds": time.perf_counter() - started}))


# --- memory: the peak total RSS of a process and all its descendants -----------------------------------------------
def _tree_rss_kib(root: int) -> int:
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/status") as status:
                kib = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
        except (OSError, StopIteration, ValueError, IndexError):
            continue  # exited while we looked
        parents[int(entry)] = ppid
        rss[int(entry)] = kib
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        grew = bool(children)
        tree |= children
    return sum(rss.get(pid, 0) for pid in tree)


@dataclass
class Run:
    seconds: float  # wall time of the conversion, measured inside the child
    cpu_seconds: float  # user + system time of the child and every process it started
    peak_mib: float  # largest total RSS of the child's process tree


def start(path_name: str, source: Path, target: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "conversions.bench", "--child", path_name, str(source), str(target)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def finish(process: subprocess.Popen, path_name: str) -> tuple[float, float]:
    """(seconds reported by the child, CPU seconds of its whole tree) once it has exited."""
    output = process.stdout.read()
    process.stdout.close()
    # wait4's usage includes the descendants the child itself waited for (its ffmpeg processes).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{path_name} failed with exit code {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1])["seconds"], usage.ru_utime + usage.ru_stime


def measure(path_name: str, source: Path, target: Path) -> Run:
    """One conversion along `path_name`, alone on the machine."""
    process = start(path_name, source, target)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kib(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        seconds, cpu_seconds = finish(process, path_name)
    finally:
        done.set()
        sampler.join()
    return Run(seconds=seconds, cpu_seconds=cpu_seconds, peak_mib=peak / 1024)


def measure_throughput(path_name: str, source: Path, workdir: Path, jobs: int) -> float:
    """Wall seconds for `jobs` conversions started together: how a busy worker node fares (one per core)."""
    started = time.perf_counter()
    processes = [start(path_name, source, workdir / f"{path_name}-{job}.mp3") for job in range(jobs)]
    for process in processes:
        finish(process, path_name)
    elapsed = time.perf_counter() - started
    for job in range(jobs):
        (workdir / f"{path_name}-{job}.mp3").unlink()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated source video")
    parser.add_argument("--repeats", type=int, default=5, help="single conversions per path (medians are shown)")
    parser.add_argument("--batches", type=int, default=2, help="batches of one conversion per core, per path")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main(*args.child)
        return 0

    with tempfile.TemporaryDirectory(prefix="mp3converter-bench-") as workdir:
        source = Path(workdir) / "source.mp4"
        print(f"Generating a {args.minutes:g}-minute stereo AAC video ...", flush=True)
        make_source(source, args.minutes)
        info = engine.probe(source)
        print(f"Source: {source.stat().st_size / 2**20:.1f} MiB, {info.duration:.0f} s, {info.default_audio}")
        runs: dict[str, list[Run]] = {name: [] for name in RUNNERS}
        batches: dict[str, list[float]] = {name: [] for name in RUNNERS}
        sizes: dict[str, int] = {}
        jobs = os.cpu_count() or 1
        for repeat in range(args.repeats):
            # Interleaved, so a slow moment of the machine falls on every path alike.
            for name in RUNNERS:
                target = Path(workdir) / f"{name}.mp3"
                runs[name].append(measure(name, source, target))
                sizes[name] = target.stat().st_size
                target.unlink()
            print(f"  repeat {repeat + 1}/{args.repeats}, one at a time: "
                  + ", ".join(f"{name} {runs[name][-1].seconds:.2f} s" for name in RUNNERS), flush=True)
        for repeat in range(args.batches):
            for name in RUNNERS:
                batches[name].append(measure_throughput(name, source, Path(workdir), jobs))
            print(f"  batch {repeat + 1}/{args.batches}, {jobs} at once: "
                  + ", ".join(f"{name} {batches[name][-1]:.2f} s" for name in RUNNERS), flush=True)

    def median(values) -> float:
        return statistics.median(values)

    wall = {name: median(run.seconds for run in runs[name]) for name in RUNNERS}
    cpu = {name: median(run.cpu_seconds for run in runs[name]) for name in RUNNERS}
    peak = {name: median(run.peak_mib for run in runs[name]) for name in RUNNERS}
    batch = {name: median(batches[name]) for name in RUNNERS}
    audio_minutes = info.duration / 60
    print()
    print(f"Converting {audio_minutes:g} min of stereo AAC to MP3 (LAME -V {VBR_QUALITY}, {SAMPLE_RATE} Hz) "
          f"on {os.cpu_count()} cores; medians of {args.repeats} single runs and {args.batches} batches of {jobs}:")
    print()
    print(f"| path | wall s (median) | min–max s | CPU s | peak RSS MiB | {jobs} at once: wall s | MP3 MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in RUNNERS:
        seconds = [run.seconds for run in runs[name]]
        print(f"| {name} | {wall[name]:.2f} | {min(seconds):.2f}–{max(seconds):.2f} | {cpu[name]:.2f} "
              f"| {peak[name]:.1f} | {batch[name]:.2f} | {sizes[name] / 2**20:.2f} |")
    ratios = [
        ("engine / cli, wall", wall["engine"] / wall["cli"], "<=", ENGINE_OVER_CLI_MAX),
        ("moviepy / engine, wall", wall["moviepy"] / wall["engine"], ">=", MOVIEPY_OVER_ENGINE_MIN),
        ("moviepy / engine, CPU", cpu["moviepy"] / cpu["engine"], None, None),
        (f"moviepy / engine, {jobs} at once", batch["moviepy"] / batch["engine"], None, None),
        ("moviepy / engine, peak RSS", peak["moviepy"] / peak["engine"], None, None),
    ]
    print()
    met = True
    for label, value, relation, target in ratios:
        verdict = ""
        if relation is not None:
            ok = value <= target if relation == "<=" else value >= target
            met = met and ok
            verdict = f"  (target {relation} {target}: {'met' if ok else 'MISSED'})"
        print(f"{label:<34} = {value:.3f}{verdict}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
