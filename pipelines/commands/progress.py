"""Progress of a long command (validate, report) as log lines on stderr: stdout stays the command's result,
and --quiet silences it."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


def print_progress(step: str):
    """A progress callback logging `[i/n] message` lines (readable in logs, unlike bars)."""
    started = time.monotonic()

    def report(index: int, total: int, message: str) -> None:
        elapsed = time.monotonic() - started
        logger.info(
            f"{step} [{index}/{total}] {elapsed:6.1f}s {message}",
            extra={"fields": {"step": step, "index": index, "total": total, "seconds": round(elapsed, 1)}},
        )

    return report
