"""Progress of a long command (validate, report) on stderr: stdout stays the command's result."""

from __future__ import annotations

import sys
import time


def print_progress(step: str):
    """A progress callback printing `[i/n] message` lines to stderr (readable in logs, unlike bars)."""
    started = time.monotonic()

    def report(index: int, total: int, message: str) -> None:
        print(
            f"{step} [{index}/{total}] {time.monotonic() - started:6.1f}s {message}",
            file=sys.stderr,
            flush=True,
        )

    return report
