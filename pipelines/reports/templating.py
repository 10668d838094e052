"""The Jinja environment of the HTML and Markdown pages (pipelines/reports/templates): the compliance
report and the incident pages. HTML templates are autoescaped: account ids and evidence are
attacker-written."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def display_time(value: str | None) -> str:
    """'2026-03-01T10:00:05.123Z' -> '2026-03-01 10:00:05': one width for every timestamp cell (UTC is
    said in the column header), so a column never wraps mid-value."""
    if not value:
        return ""
    return dt.datetime.fromisoformat(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def template_environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        # The templates are *.html.j2: matching "html" alone never escaped (account ids are attacker-written)
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the report instead of blanking a cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = display_time
    environment.filters["number"] = lambda value: f"{value:,}" if isinstance(value, int) else value
    environment.filters["cell"] = lambda value: "" if value is None else (
        ", ".join(map(str, value)) if isinstance(value, list) else value
    )  # fmt: skip
    return environment
