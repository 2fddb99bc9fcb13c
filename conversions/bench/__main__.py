"""`make bench`: the whole service measured against its targets, in one run, printed as one table.

    python -m conversions.bench [--minutes 10] [--repeats 3] [--jobs 3] [--batch 4] [--big-gib 2]

Generates a stereo AAC video, measures the engine against the ffmpeg CLI and MoviePy (converters.py), then starts
the service the way `make run` does (stack.py: SQLite, the filesystem broker, the local folder, on temporary
folders and ports) and measures it through its API (service.py); then the same on RabbitMQ (and MariaDB) when
CELERY_BROKER_URL (and DATABASE_URL) name them. Every ratio compares figures taken in this run. Exits 1 when a
target is missed, naming which, else 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from conversions import engine

from . import service
from .converters import make_source, machine_ceiling, measure_converters
from .report import Row, missed, table
from .stack import Stack

# The bench's own stacks take its 2 GB upload (the defaults would too, but the padding is not hours of audio).
STACK_SETTINGS = {"MAX_UPLOAD_MB": "4096", "MAX_DURATION_MINUTES": "360"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated source video")
    parser.add_argument("--repeats", type=int, default=3, help="single conversions per path (P1, MoviePy)")
    parser.add_argument("--jobs", type=int, default=3, help="jobs timed one at a time, per stack (P2)")
    parser.add_argument("--batch", type=int, default=4, help="jobs in the batch for one and two converters (P4)")
    parser.add_argument("--big-gib", type=float, default=2.0, help="size of the large upload (P3)")
    parser.add_argument("--rounds", type=int, default=5, help="load rounds per endpoint (P6)")
    return parser.parse_args(argv)


def p4_rows(ceiling: list[float], one: float, two: float, batch: int) -> list[Row]:
    speedup, ceiling_median = one / two, statistics.median(ceiling)
    share = speedup / ceiling_median
    return [
        Row("machine ceiling: 2 raw ffmpeg at once vs one after another", ceiling, "× speed-up"),
        Row(f"batch of {batch}: 1 converter", [one], "s"),
        Row(f"batch of {batch}: 2 converters", [two], "s"),
        Row("**P4** 2 converters vs 1, share of the ceiling", [share], "×", f"≥ {service.P4_SHARE_OF_CEILING}",
            f"{speedup:.2f} / {ceiling_median:.2f} = {share:.3f}", share >= service.P4_SHARE_OF_CEILING),
    ]


def rabbitmq_rows(root: Path, source: Path, jobs: int) -> list[Row]:
    broker, database = os.environ.get("CELERY_BROKER_URL", ""), os.environ.get("DATABASE_URL", "")
    if not broker.startswith("amqp"):
        return [service.p2_unavailable("RabbitMQ", "not measured: set CELERY_BROKER_URL=amqp://…")]
    database = database if database.startswith("mysql") else ""
    label = "RabbitMQ + MariaDB" if database else "RabbitMQ + SQLite"
    try:
        with Stack(root / "stack-amqp", broker_url=broker, database_url=database, settings=STACK_SETTINGS,
                   roles=("web", "convert", "notify")) as stack:
            return [service.p2_row(label, service.accepted_to_done(stack, source, jobs=jobs))]
    except Exception as exc:  # a broker or database that is not there: say so in the table, measure the rest
        return [service.p2_unavailable(label, f"not available: {str(exc).splitlines()[0][:80]}")]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mp3converter-bench-") as workdir:
        root = Path(workdir)
        source = root / "source.mp4"
        print(f"Generating a {args.minutes:g}-minute stereo AAC video ...", flush=True)
        make_source(source, args.minutes)
        info = engine.probe(source)
        converter_rows, _ = measure_converters(source, root, repeats=args.repeats, batches=1)
        rows += converter_rows
        ceiling = machine_ceiling(source, root, repeats=2)
        print("  starting the service as `make run` does ...", flush=True)
        with Stack(root / "stack", settings=STACK_SETTINGS) as stack:
            rows.append(service.p2_row("`make run` defaults", service.accepted_to_done(stack, source, jobs=args.jobs)))
            print("  P2 done; P6 ...", flush=True)
            rows += service.status_under_load(stack, source, rounds=args.rounds)
            print("  P7 (20 s of idle) ...", flush=True)
            rows += service.idle_cost(stack)
            print("  P4, one converter ...", flush=True)
            one = service.batch_seconds(stack, source, jobs=args.batch)
            print(f"  P3, a {args.big_gib:g} GiB upload ...", flush=True)
            big = root / "big.mkv"
            service.make_big_source(big, args.big_gib)
            rows += service.big_upload(stack, big)
            big.unlink()
        with Stack(root / "stack-2", settings=STACK_SETTINGS, convert_workers=2,
                   roles=("web", "convert", "notify")) as stack:
            print("  P4, two converters ...", flush=True)
            two = service.batch_seconds(stack, source, jobs=args.batch)
        rows += p4_rows(ceiling, one, two, args.batch)
        print("  P2 on RabbitMQ ...", flush=True)
        rows += rabbitmq_rows(root, source, args.jobs)

    print()
    print(f"{info.duration / 60:g} min of stereo AAC to MP3 (LAME -V 2, 44.1 kHz) on {os.cpu_count()} cores; "
          f"the whole run took {(time.monotonic() - started) / 60:.1f} min.")
    print()
    print(table(rows))
    print()
    if failed := missed(rows):
        print("MISSED: " + "; ".join(name.replace("**", "") for name in failed))
        return 1
    print("Every target met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
