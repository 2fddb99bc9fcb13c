"""P1 and MoviePy: the engine against the plain ffmpeg CLI and the classic MoviePy path, and the machine's ceiling
for P4 (two raw ffmpeg processes at once against one after another).

The source is converted to MP3 (LAME VBR -V 2, 44.1 kHz, stereo) three ways, interleaved, several times:

- engine:  conversions.engine.convert(), as the convert worker runs it (probe, then one ffmpeg process);
- cli:     the same ffmpeg binary, by hand, with identical output settings;
- moviepy: the classic path, MoviePy 2's VideoFileClip(src).audio.write_audiofile(dst) with matching settings.

Each run is a separate process. Its time is measured inside that process around the conversion only (the
engine's and MoviePy's imports are not counted) and its peak memory is the largest total RSS of its whole
process tree, sampled from /proc.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conversions import engine

from .procstat import PeakRss
from .report import Row

VBR_QUALITY = 2
SAMPLE_RATE = 44100
ENGINE_OVER_CLI_MAX = 1.05  # P1


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


@dataclass
class Run:
    seconds: float  # wall time of the conversion, measured inside the child
    cpu_seconds: float  # user + system time of the child and every process it started
    peak_mib: float  # largest total RSS of the child's process tree


def start(path_name: str, source: Path, target: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "conversions.bench.converters", path_name, str(source), str(target)],
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
    with PeakRss([process.pid], whole_tree=True) as memory:
        seconds, cpu_seconds = finish(process, path_name)
    return Run(seconds=seconds, cpu_seconds=cpu_seconds, peak_mib=memory.peak[process.pid] / 1024)


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


def measure_converters(source: Path, workdir: Path, *, repeats: int, batches: int) -> tuple[list[Row], float]:
    """P1 and the MoviePy rows; also the CLI's median wall time, which P2 is held to."""
    runs: dict[str, list[Run]] = {name: [] for name in RUNNERS}
    together: dict[str, list[float]] = {name: [] for name in RUNNERS}
    jobs = os.cpu_count() or 1
    for repeat in range(repeats):
        for name in RUNNERS:  # interleaved, so a slow moment of the machine falls on every path alike
            target = workdir / f"{name}.mp3"
            runs[name].append(measure(name, source, target))
            target.unlink()
        print(f"  P1 {repeat + 1}/{repeats}: " + ", ".join(f"{name} {runs[name][-1].seconds:.2f} s" for name in RUNNERS),
              flush=True)
    for repeat in range(batches):
        for name in ("engine", "moviepy"):
            together[name].append(measure_throughput(name, source, workdir, jobs))
        print(f"  MoviePy batch {repeat + 1}/{batches}: " + ", ".join(
            f"{name} {together[name][-1]:.2f} s" for name in ("engine", "moviepy")), flush=True)

    def med(name, attribute):
        return statistics.median(getattr(run, attribute) for run in runs[name])

    wall = {name: [run.seconds for run in runs[name]] for name in RUNNERS}
    engine_over_cli = med("engine", "seconds") / med("cli", "seconds")
    rows = [
        Row("engine, one job: wall", wall["engine"], "s"),
        Row("ffmpeg CLI, one job: wall", wall["cli"], "s"),
        Row("MoviePy, one job: wall", wall["moviepy"], "s", note="no target"),
        Row("**P1** engine / CLI, wall", [e / c for e, c in zip(wall["engine"], wall["cli"])], "×",
            f"≤ {ENGINE_OVER_CLI_MAX}", f"{engine_over_cli:.3f}", engine_over_cli <= ENGINE_OVER_CLI_MAX),
        Row("engine, one job: CPU", [run.cpu_seconds for run in runs["engine"]], "s"),
        Row("MoviePy, one job: CPU", [run.cpu_seconds for run in runs["moviepy"]], "s", "report",
            f"{med('moviepy', 'cpu_seconds') / med('engine', 'cpu_seconds'):.2f}× engine"),
        Row("engine, one job: peak RSS", [run.peak_mib for run in runs["engine"]], "MiB"),
        Row("MoviePy, one job: peak RSS", [run.peak_mib for run in runs["moviepy"]], "MiB", "report",
            f"{med('moviepy', 'peak_mib') / med('engine', 'peak_mib'):.2f}× engine"),
        Row(f"engine, {jobs} jobs at once (one per core): wall", together["engine"], "s"),
        Row(f"MoviePy, {jobs} jobs at once (one per core): wall", together["moviepy"], "s", "report",
            f"{statistics.median(together['engine']) / statistics.median(together['moviepy']):.2f}× "
            "engine's throughput"),
    ]
    return rows, statistics.median(wall["cli"])


def machine_ceiling(source: Path, workdir: Path, *, repeats: int) -> list[float]:
    """P4's ceiling: two raw ffmpeg processes one after another, over the same two at once (one speed-up a repeat)."""
    speedups = []
    targets = [workdir / "ceiling-1.mp3", workdir / "ceiling-2.mp3"]
    for _ in range(repeats):
        started = time.perf_counter()
        for target in targets:
            subprocess.run(cli_command(source, target), check=True)
        serial = time.perf_counter() - started
        started = time.perf_counter()
        for process in [subprocess.Popen(cli_command(source, target)) for target in targets]:
            if process.wait():
                raise SystemExit("ffmpeg failed")
        speedups.append(serial / (time.perf_counter() - started))
    for target in targets:
        target.unlink(missing_ok=True)
    return speedups


if __name__ == "__main__":
    _child_main(*sys.argv[1:4])
