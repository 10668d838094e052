"""Time on the command line and in the state: one duration grammar, one moment parser, one UTC rule.

Durations are one or more `<number><unit>` parts (`45s`, `30m`, `1.5h`, `1h30m`, `7d`) or a bare number of
seconds; the generator, the detections, the evaluation and the `incidents.window` setting all read them
here. Errors are ValueError with the accepted forms spelled out, so a command line and a configuration file
report the same message.
"""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+|\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """'60s', '5m', '1.5h', '1h30m', '7d' or plain seconds -> a positive timedelta."""
    compact = str(text).strip().lower()
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration like 60s, 5m, 1h30m, 24h or 7d")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return dt.timedelta(seconds=seconds)


def parse_moment(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An RFC 3339 time or date (UTC when no offset is given), or a duration meaning that long ago."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            return (now or dt.datetime.now(dt.UTC)) - parse_duration(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a time (2026-03-01, 2026-03-01T10:00Z) nor a duration (24h, 7d)"
            ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """The lake and the state tables store naive UTC timestamps."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
