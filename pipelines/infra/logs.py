"""The process's one logging setup: every command's --quiet/--verbose and --log-format land here.

Log records go to stderr (stdout stays the command's result). People read text lines; the long-running
commands (`detect --every`, `schedule`, the streaming job's own process) write JSON lines by default so a
log shipper can index them: {"ts", "level", "logger", "message", ...fields}. A record's structured fields
travel as `extra={"fields": {...}}` and are merged into its JSON line (text lines show only the message).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

# --quiet: warnings and errors only; --verbose: debugging detail too.
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RESERVED_KEYS = ("ts", "level", "logger", "message")


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record; its `fields` beside the standard keys (which they cannot replace)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None) or {}
        line.update({key: value for key, value in fields.items() if key not in RESERVED_KEYS})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time: the redacting wrapper of cli.main, or a test's
    capture, rather than the stream that happened to be current when logging was configured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


# Our loggers: the library's modules and the job script's.
OWN_LOGGERS = ("pipelines", "usagewatch")


def configure_logging(verbosity: str = "normal", json_lines: bool = False) -> None:
    """Route every logger to stderr, as text or as JSON lines: ours at the chosen level, libraries'
    (Great Expectations, kafka-python, ...) at warnings only, so their INFO chatter stays out."""
    handler = _CurrentStderrHandler()
    handler.setFormatter(JsonLinesFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    # force: a second command in one process (tests, the demo) gets its own level and format
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(LEVELS[verbosity])
