"""Server processes this project starts and stops: the Kafka brokers, the Flink cluster's JVMs, the detached
aggregation job.

Each runs in its own session (it outlives the command that started it and ignores the terminal's Ctrl-C),
appends its console output to a log, and is recorded in a PID file. Only a process that a PID file names
*and* whose command line is ours is ever signalled: PIDs get reused.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

STOP_TIMEOUT_S = 30.0
# After SIGKILL only the kernel is involved; exit follows promptly.
KILL_WAIT_S = 10.0
POLL_INTERVAL_S = 0.25

# Processes this Python process launched: polling them reaps the exit status, so a stopped one does not
# linger as a zombie that looks alive.
_launched: dict[int, subprocess.Popen] = {}


class ProcessError(RuntimeError):
    """A process we start or stop is not in the state asked for (still alive after SIGKILL, or already
    running); the message names it."""


def spawn(
    command: list[str],
    console_log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start a server process whose stdout/stderr append to console_log."""
    with console_log.open("ab") as console:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=console,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
        )
    _launched[process.pid] = process
    return process


def read_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def is_alive(pid: int) -> bool:
    launched = _launched.get(pid)
    if launched is not None:
        return launched.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(pid_file: Path, *marks: str) -> int | None:
    """The process pid_file names if it is alive and its command line holds every mark, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    cmdline = read_cmdline(pid) if is_alive(pid) else None
    return pid if cmdline is not None and all(mark in cmdline for mark in marks) else None


def _signal(pid: int, signum: int, group: bool) -> None:
    # The process may exit between our liveness check and the signal.
    with suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, signum)


def _exited_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def stop_process(pid: int, timeout: float, pid_file: Path, group: bool = False) -> None:
    """SIGTERM pid (with group, its whole process group), SIGKILL it if still alive after timeout, then
    drop its PID file."""
    # SIGTERM lets the server flush and close its logs cleanly; SIGKILL only if it hangs.
    _signal(pid, signal.SIGTERM, group)
    if not _exited_within(pid, timeout):
        _signal(pid, signal.SIGKILL, group)
        if not _exited_within(pid, KILL_WAIT_S):
            raise ProcessError(f"pid {pid} is still alive after SIGKILL")
    _launched.pop(pid, None)
    pid_file.unlink(missing_ok=True)


def stop_recorded(
    pid_file: Path, *marks: str, timeout: float = STOP_TIMEOUT_S, group: bool = False
) -> int | None:
    """Stop the process pid_file names if it is ours (see running_pid); its pid, or None if none ran.
    A PID file naming a dead or foreign process is stale: it is dropped and nothing is signalled."""
    pid = running_pid(pid_file, *marks)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return None
    stop_process(pid, timeout, pid_file, group)
    return pid


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Serialises start/stop between concurrent callers (two pytest sessions, a CLI call during a test)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def rss_mib(pid: int | None) -> float:
    """Resident memory of a process in MiB (0 when it is not running)."""
    if pid is None:
        return 0.0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0
