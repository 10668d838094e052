"""Argument types shared by the commands: the domain's parsers, with their messages kept.

argparse shows a type's ArgumentTypeError message but replaces a ValueError's with "invalid <name> value";
the domain raises ValueError (it knows nothing of argparse), so each parser is wrapped here once.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from pipelines.infra import clock

T = TypeVar("T")


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


duration = argument_type(clock.parse_duration)
moment = argument_type(clock.parse_moment)


def day(text: str, today: dt.date | None = None) -> dt.date:
    """YYYY-MM-DD, or 'today' / 'yesterday' (UTC) so cron jobs need no date arithmetic."""
    today = today or dt.datetime.now(dt.UTC).date()
    relative = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    if text in relative:
        return relative[text]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD, today or yesterday)") from None
