"""The machine a result came from, and peak resident memory and CPU time of process groups from /proc."""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def describe() -> dict:
    """nproc, memory and the load average at the start: absolute numbers mean little without them."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    load_1m, load_5m, load_15m = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(meminfo["MemTotal"].split()[0]) / 2**20, 1),
        "load_average_at_start": [round(load_1m, 2), round(load_5m, 2), round(load_15m, 2)],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0  # the process exited between listing and reading


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all its threads)."""
    try:
        # Fields after the command name (which may contain spaces): utime and stime are 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """root and every process below it (one /proc scan)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may contain spaces; the parent pid follows its closing paren.
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def kind_of(pid: int) -> str:
    """'jvm' or 'python' (or 'other') from the command line."""
    command = _command(pid)
    executable = Path(command.split(" ", 1)[0]).name
    if executable == "java":
        return "jvm"
    return "python" if executable.startswith("python") else "other"


class PeakRss:
    """Samples, every `interval_s`, the summed RSS of named process groups; keeps each group's peak,
    and the CPU seconds each group's processes used (the last sample of each pid: a process's final
    interval is missed). CPU time per event is what a shared machine's load does not change much.

    groups maps a label to a callable returning that group's pids at the moment of sampling.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval_s: float = 0.5):
        self.groups = groups
        self.interval_s = interval_s
        self.peaks = dict.fromkeys(groups, 0)
        self.peak_total = 0
        self._cpu_by_pid: dict[str, dict[int, float]] = {label: {} for label in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        total = 0
        for label, pids in self.groups.items():
            listed = pids()
            current = sum(rss_bytes(pid) for pid in listed)
            for pid in listed:
                used = cpu_seconds(pid)
                if used:  # 0.0: gone before it was read; keep its last sample
                    self._cpu_by_pid[label][pid] = used
            self.peaks[label] = max(self.peaks[label], current)
            total += current
        self.peak_total = max(self.peak_total, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def mib(self) -> dict[str, float]:
        result = {label: round(peak / 2**20, 1) for label, peak in self.peaks.items()}
        result["sum_of_groups_at_peak"] = round(self.peak_total / 2**20, 1)
        return result

    def cpu_s(self) -> dict[str, float]:
        return {label: round(sum(by_pid.values()), 1) for label, by_pid in self._cpu_by_pid.items()}
