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


def measure(path_name: str, source: Path, target: Path) -> tuple[float, float]:
    """(seconds, peak MiB) for one conversion along `path_name`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "conversions.bench", "--child", path_name, str(source), str(target)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kib(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{path_name} failed with exit code {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1])["seconds"], peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated source video")
    parser.add_argument("--repeats", type=int, default=5, help="conversions per path (the table shows medians)")
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
        seconds: dict[str, list[float]] = {name: [] for name in RUNNERS}
        memory: dict[str, list[float]] = {name: [] for name in RUNNERS}
        sizes: dict[str, int] = {}
        for repeat in range(args.repeats):
            # Interleaved, so a slow moment of the machine falls on every path alike.
            for name in RUNNERS:
                target = Path(workdir) / f"{name}.mp3"
                elapsed, peak = measure(name, source, target)
                seconds[name].append(elapsed)
                memory[name].append(peak)
                sizes[name] = target.stat().st_size
                target.unlink()
            print(f"  repeat {repeat + 1}/{args.repeats}: "
                  + ", ".join(f"{name} {seconds[name][-1]:.2f} s" for name in RUNNERS), flush=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    print()
    print(f"Converting {args.minutes:g} min of stereo AAC to MP3 (LAME -V {VBR_QUALITY}, {SAMPLE_RATE} Hz), "
          f"median of {args.repeats} on {os.cpu_count()} cores:")
    print()
    print("| path | median s | min s | max s | peak RSS MiB (median) | MP3 MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in RUNNERS:
        print(f"| {name} | {median[name]:.2f} | {min(seconds[name]):.2f} | {max(seconds[name]):.2f} "
              f"| {statistics.median(memory[name]):.1f} | {sizes[name] / 2**20:.2f} |")
    engine_over_cli = median["engine"] / median["cli"]
    moviepy_over_engine = median["moviepy"] / median["engine"]
    engine_ok = engine_over_cli <= ENGINE_OVER_CLI_MAX
    moviepy_ok = moviepy_over_engine >= MOVIEPY_OVER_ENGINE_MIN
    print()
    print(f"engine / cli     = {engine_over_cli:.3f}  (target <= {ENGINE_OVER_CLI_MAX}: "
          f"{'met' if engine_ok else 'MISSED'})")
    print(f"moviepy / engine = {moviepy_over_engine:.3f}  (target >= {MOVIEPY_OVER_ENGINE_MIN}: "
          f"{'met' if moviepy_ok else 'MISSED'})")
    print(f"peak RSS moviepy / engine = {statistics.median(memory['moviepy']) / statistics.median(memory['engine']):.2f}")
    return 0 if engine_ok and moviepy_ok else 1


if __name__ == "__main__":
    sys.exit(main())
