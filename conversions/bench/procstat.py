"""What the bench reads from /proc: a process tree, its resident memory and its CPU time (Linux only)."""

from __future__ import annotations

import os
import threading

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def tree(root: int) -> set[int]:
    """`root` and every process below it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
    found, grew = {root}, True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in found} - found
        grew = bool(children)
        found |= children
    return found


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    except (OSError, ValueError):
        return 0


def tree_rss_kib(root: int) -> int:
    return sum(rss_kib(pid) for pid in tree(root))


def cpu_seconds(pid: int) -> float:
    """User and system time of a live process and of the children it has waited for."""
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return 0.0
    # Fields 14-17 of /proc/<pid>/stat (utime, stime, cutime, cstime), counted from the state field as index 0.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(roots: list[int]) -> float:
    return sum(cpu_seconds(pid) for root in roots for pid in tree(root))


class PeakRss:
    """Samples the RSS of some processes every 50 ms while the block runs; `.peak[pid]` is each one's largest."""

    def __init__(self, pids: list[int], *, whole_tree: bool = False):
        self.pids = pids
        self.whole_tree = whole_tree
        self.peak = {pid: 0 for pid in pids}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[int, int]:
        return {pid: tree_rss_kib(pid) if self.whole_tree else rss_kib(pid) for pid in self.pids}

    def _run(self) -> None:
        while not self._done.is_set():
            for pid, kib in self.sample().items():
                self.peak[pid] = max(self.peak[pid], kib)
            self._done.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()
