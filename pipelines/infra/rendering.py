"""Text for people and JSON for machines: terminal-safe tables and JSON-safe values, for every command and
sink that shows data (the lake's, or the state's, which may carry hostile producers' strings)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

from pipelines.stream.contracts import format_event_time


def to_json_value(value):
    """A JSON-safe rendering of a DuckDB value (timestamps as RFC 3339 UTC with Z)."""
    if isinstance(value, dt.datetime):
        return format_event_time(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    return value


def _escape_character(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    """Text with every non-printable character escaped (\\x1b, \\x00, \\u202e...).

    Data in the lake comes from producers that may be hostile: a raw ESC could rewrite the analyst's
    terminal, NUL and C1 controls confuse it, and bidi overrides make a cell read differently.
    """
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else _escape_character(character) for character in text
    )


def display_value(value) -> str:
    if value is None:
        return "NULL"
    rendered = to_json_value(value)
    return rendered if isinstance(rendered, str) else json.dumps(rendered)


def format_table(columns: list[str], rows: list[tuple], total_rows: int | None = None) -> str:
    """Rows as an aligned text table, every cell escaped for the terminal (see terminal_safe); with
    `total_rows` beyond the rows given, a note says how many there were."""
    cells = [[terminal_safe(display_value(value)) for value in row] for row in rows]
    columns = [terminal_safe(name) for name in columns]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values: list[str]) -> str:
        return " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    body = [line(columns), separator, *(line(row) for row in cells)]
    cut = total_rows is not None and total_rows > len(rows)
    count = f"({len(rows)} row{'s' if len(rows) != 1 else ''})"
    body.append(cut_note(total_rows, len(rows)) if cut else count)
    return "\n".join(body)


def cut_note(total_rows: int, shown: int) -> str:
    return f"(… {total_rows:,} rows, showing {shown:,}; --limit N or --all for more)"
