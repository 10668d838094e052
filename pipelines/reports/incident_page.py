"""The incident page: one self-contained HTML file per incident, what a notification links to.

It shows the incident's header and summary, a picture of the ring (its accounts linked to the IPs,
payment cards and prompt templates they share, an inline SVG laid out here), the timeline of its
accounts' traffic from the lake, and every signal with its evidence. No script, no stylesheet or font
from elsewhere: it opens offline, from a file:// link. Account ids and evidence come from event data,
which an attacker writes: everything is HTML-escaped by the template engine (autoescape).
"""

from __future__ import annotations

import re
from pathlib import Path

_INCIDENT_ID = re.compile(r"[0-9A-Za-z_-]+")


def incident_pages_dir(reports_dir: Path) -> Path:
    """Where `usagewatch report` writes the pages, beside the reports."""
    return reports_dir / "incidents"


def page_file_name(incident_id: str) -> str:
    """The page's file name, also the last segment of its URL under routing.incident_page_base_url."""
    if not _INCIDENT_ID.fullmatch(incident_id):  # ids are hex digests; anything else is not ours
        raise ValueError(f"not an incident id: {incident_id!r}")
    return f"incident-{incident_id}.html"
