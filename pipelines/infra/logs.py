"""The process's one logging setup: every command's --quiet/--verbose lands here."""

from __future__ import annotations

import logging
import sys

# --quiet: warnings and errors only; --verbose: debugging detail too.
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}


def configure_logging(verbosity: str = "normal") -> None:
    """Log records to stderr at the chosen level (stdout stays the command's output)."""
    logging.basicConfig(
        level=LEVELS[verbosity],
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,  # a second command in one process (tests, the demo) gets its own level
    )
