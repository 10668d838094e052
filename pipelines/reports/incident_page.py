"""The incident page: one self-contained HTML file per incident, what a notification links to.

It shows the incident's header and summary, a picture of the ring (its accounts linked to the IPs,
payment cards and prompt templates they share, and to the entities its signals name: an inline SVG laid
out here), the timeline of its accounts' traffic from the lake, and every signal with its evidence. No
script, no stylesheet or font from elsewhere: it opens offline, from a file:// link. Account ids and
evidence come from event data, which an attacker writes: everything reaches the page through the
template engine's HTML escaping (autoescape), the SVG included.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.incidents.alert_state import AlertStore, parse_time
from pipelines.incidents.correlation import signal_entity
from pipelines.incidents.routing import page_file_name
from pipelines.reports.templating import template_environment
from pipelines.stream.contracts import format_event_time

# A hydra ring has thousands of accounts: the picture draws the best-linked ones and says how many more.
MAX_ACCOUNTS_DRAWN = 120
MAX_HUBS_DRAWN = 30
ACCOUNT_LABELS_UP_TO = 48  # beyond this, names would overlap: they are in each node's tooltip instead
LABEL_CHARACTERS = 22
TIMELINE_BUCKETS = 120  # at most this many bars
_BUCKET_MINUTES = (1, 5, 15, 30, 60, 180, 360, 1440)
HUB_COLOURS = {
    "ip": "#2e86c1",
    "payment": "#ca6f1e",
    "template": "#7d3c98",
    "ring": "#922b21",
    "subnet": "#17a589",
    "asn": "#5d6d7e",
    "region": "#b7950b",
}
_SIZE = 820  # the picture is square; the circles leave room for labels

# The first step of both queries: the incident's accounts' events between $start and $end.
_INCIDENT_TRAFFIC_CTE = """
incident_traffic as (
    select event_time, account_id, source_ip, payment_fingerprint, prompt_fingerprint, output_tokens,
        status_code
    from events
    where list_contains($accounts, account_id)
        and event_time >= $start and event_time < $end
        -- dt prunes whole hive partitions before any file is opened
        and dt between $first_day and $last_day
)"""

# What the incident's accounts share while it ran: each (account, kind, value) whose value two or more of
# them used. Sharing is what ties a ring together; a value one account used links nothing.
RING_LINKS_SQL = f"""
with {_INCIDENT_TRAFFIC_CTE},

account_values as (
    select account_id, 'ip' as kind, source_ip as value from incident_traffic where source_ip is not null
    union
    select account_id, 'payment', payment_fingerprint from incident_traffic
    where payment_fingerprint is not null
    union
    select account_id, 'template', prompt_fingerprint from incident_traffic
    where prompt_fingerprint is not null
),

shared_values as (
    select kind, value from account_values group by kind, value having count(*) >= 2
)

select account_id, kind, value
from account_values semi join shared_values using (kind, value)
order by kind, value, account_id
"""

# The incident's accounts' traffic per bucket, from a little before its first signal to a little after
# its last: what they did around the finding, not only inside it.
TIMELINE_SQL = f"""
with {_INCIDENT_TRAFFIC_CTE}

select
    time_bucket(to_minutes($bucket_minutes), event_time) as bucket_start,
    count(*) as requests,
    coalesce(sum(output_tokens), 0)::bigint as output_tokens,
    count(distinct account_id) as accounts,
    -- refused or failed requests: an extraction campaign riding rate limits shows as 429s here
    count(*) filter (where status_code >= 400) as errors
from incident_traffic
group by 1
order by 1
"""


# --- the ring picture -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    kind: str  # "account" or an entity type (ip, payment, template, ring, subnet, asn, region)
    name: str  # the full account id or entity id (the tooltip)
    label: str  # what is written beside it ("" when there is no room)
    x: float
    y: float
    anchor: str = "middle"  # SVG text-anchor of the label
    label_x: float | None = None  # where the label starts or ends, when not centred under the node


@dataclass(frozen=True)
class Edge:
    kind: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class RingPicture:
    size: int
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    accounts_not_drawn: int = 0
    hubs_not_drawn: int = 0

    @property
    def kinds(self) -> list[str]:
        """The hub kinds drawn, for the legend."""
        return sorted({node.kind for node in self.nodes if node.kind != "account"})


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 1] + "…"


def lay_out_ring(accounts: list[str], links: set[tuple[str, str, str]]) -> RingPicture:
    """Place the hubs (shared values: kind, value) on an inner circle and the accounts on an outer one,
    each account beside the first hub it uses, so that most lines run outward instead of across."""
    picture = RingPicture(size=_SIZE)
    degree: dict[tuple[str, str], int] = defaultdict(int)
    hubs_of: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for account, kind, value in links:
        degree[(kind, value)] += 1
        hubs_of[account].add((kind, value))
    hubs = sorted(degree, key=lambda hub: (-degree[hub], hub))
    picture.hubs_not_drawn = max(len(hubs) - MAX_HUBS_DRAWN, 0)
    hubs = hubs[:MAX_HUBS_DRAWN]
    hub_index = {hub: index for index, hub in enumerate(hubs)}
    drawn = sorted(accounts, key=lambda account: (-len(hubs_of[account]), account))[:MAX_ACCOUNTS_DRAWN]
    picture.accounts_not_drawn = len(accounts) - len(drawn)
    drawn.sort(
        key=lambda account: (
            min((hub_index[hub] for hub in hubs_of[account] if hub in hub_index), default=len(hubs)),
            account,
        )
    )

    centre = _SIZE / 2
    hub_radius = 0.0 if len(hubs) == 1 else _SIZE * 0.2
    account_radius = _SIZE * 0.36

    def point(radius: float, index: int, count: int) -> tuple[float, float, float]:
        angle = 2 * math.pi * index / max(count, 1) - math.pi / 2  # the first at twelve o'clock
        return centre + radius * math.cos(angle), centre + radius * math.sin(angle), angle

    hub_points = {}
    for index, (kind, value) in enumerate(hubs):
        x, y, _ = point(hub_radius, index, len(hubs))
        hub_points[(kind, value)] = (x, y)
        picture.nodes.append(Node(kind, value, _short(value), round(x, 1), round(y, 1)))
    labelled = len(drawn) <= ACCOUNT_LABELS_UP_TO
    for index, account in enumerate(drawn):
        x, y, angle = point(account_radius, index, len(drawn))
        for hub in sorted(hubs_of[account]):
            if hub in hub_points:
                hx, hy = hub_points[hub]
                picture.edges.append(Edge(hub[0], round(hx, 1), round(hy, 1), round(x, 1), round(y, 1)))
        # Labels sit beside the node, reading away from the circle on either side.
        anchor = "start" if math.cos(angle) >= -1e-9 else "end"
        lx = x + (7 if anchor == "start" else -7)
        label = _short(account) if labelled else ""
        picture.nodes.append(Node("account", account, label, round(x, 1), round(y, 1), anchor, round(lx, 1)))
    return picture


def ring_links(
    signals: list[dict[str, Any]], lake_links: list[tuple[str, str, str]]
) -> set[tuple[str, str, str]]:
    """(account, kind, value) from the lake's shared values and from the entity each signal names."""
    links = set(lake_links)
    for signal in signals:
        entity = signal_entity(signal)
        if entity is None or entity["type"] == "partition":
            continue
        links.update((account, entity["type"], entity["id"]) for account in signal["account_ids"])
    return links


# --- the lake -----------------------------------------------------------------------------------------


def _bounds(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return {
        "start": start,
        "end": end,
        "first_day": start.date().isoformat(),
        "last_day": end.date().isoformat(),
    }


def lake_ring_links(con, incident: dict[str, Any]) -> list[tuple[str, str, str]]:
    bounds = _bounds(parse_time(incident["first_seen"]), parse_time(incident["last_seen"]))
    return [
        tuple(row)
        for row in con.execute(RING_LINKS_SQL, {"accounts": incident["account_ids"], **bounds}).fetchall()
    ]


def bucket_minutes(start: dt.datetime, end: dt.datetime) -> int:
    """The smallest of the usual bucket widths that keeps the timeline to TIMELINE_BUCKETS bars."""
    minutes = max((end - start).total_seconds() / 60, 1)
    return next(
        (width for width in _BUCKET_MINUTES if minutes / width <= TIMELINE_BUCKETS), _BUCKET_MINUTES[-1]
    )


def lake_timeline(
    con, incident: dict[str, Any]
) -> tuple[int, dt.datetime, dt.datetime, list[dict[str, Any]]]:
    """(bucket minutes, start, end, rows) of the accounts' traffic from a tenth of the span (at least 15
    minutes) before the first signal to as much after the last; naive UTC as the lake keeps time."""
    first, last = parse_time(incident["first_seen"]), parse_time(incident["last_seen"])
    margin = max((last - first) / 10, dt.timedelta(minutes=15))
    start, end = first - margin, last + margin
    width = bucket_minutes(start, end)
    cursor = con.execute(
        TIMELINE_SQL, {"accounts": incident["account_ids"], "bucket_minutes": width, **_bounds(start, end)}
    )
    columns = [column[0] for column in cursor.description]
    return width, start, end, [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    tooltip: str


@dataclass
class TimelinePanel:
    title: str
    colour: str
    peak: int
    bars: list[Bar]


@dataclass
class TimelinePicture:
    """Bars per bucket over [start, end), drawn in Python as the ring is: a page per changed incident at
    every detect must cost milliseconds (a Vega-Lite chart took 1-3 s to render here)."""

    width: int
    height: int  # of one panel's plot
    bucket_minutes: int
    span_x: tuple[float, float]  # the incident's first to last signal, shaded
    ticks: list[tuple[float, str]]  # (x, label) under the panels
    panels: list[TimelinePanel]


_TIMELINE_WIDTH, _TIMELINE_HEIGHT, _TIMELINE_TICKS = 900, 120, 6


def timeline_picture(
    rows: list[dict[str, Any]], width: int, start: dt.datetime, end: dt.datetime, incident: dict[str, Any]
) -> TimelinePicture:
    seconds = max((end - start).total_seconds(), 1)

    def x_of(moment: dt.datetime) -> float:
        return round(min(max((moment - start).total_seconds() / seconds, 0), 1) * _TIMELINE_WIDTH, 1)

    bar_width = max(_TIMELINE_WIDTH * width * 60 / seconds - 1, 1)
    panels = []
    for name, title, colour in (
        ("requests", "requests", "#2e86c1"),
        ("output_tokens", "output tokens", "#7d3c98"),
    ):
        peak = max((row[name] for row in rows), default=0)
        bars = []
        for row in rows:
            height = round(_TIMELINE_HEIGHT * row[name] / peak, 1) if peak else 0
            label = (
                f"{row['bucket_start']:%d %b %H:%M}: {row[name]:,} {title}, {row['accounts']} account(s), "
                f"{row['errors']:,} request(s) refused or failed"
            )
            bars.append(
                Bar(x_of(row["bucket_start"]), _TIMELINE_HEIGHT - height, round(bar_width, 1), height, label)
            )
        panels.append(TimelinePanel(title, colour, peak, bars))
    step = (end - start) / (_TIMELINE_TICKS - 1)
    ticks = [
        (x_of(start + step * index), f"{start + step * index:%d %b %H:%M}")
        for index in range(_TIMELINE_TICKS)
    ]
    span = (x_of(parse_time(incident["first_seen"])), x_of(parse_time(incident["last_seen"])))
    return TimelinePicture(_TIMELINE_WIDTH, _TIMELINE_HEIGHT, width, span, ticks, panels)


# --- the page -----------------------------------------------------------------------------------------


def _evidence_items(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (key, value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))
        for key, value in sorted(evidence.items())
    ]


def page_data(
    store: AlertStore, incident_id: str, lake_con=None, lake_note: str | None = None
) -> dict[str, Any]:
    """Everything the page shows: the incident, its signals, the ring picture, the timeline rows."""
    record = store.get_incident(incident_id)
    incident = record["incident"]
    signals = sorted(
        store.incident_signals(record["incident_id"]), key=lambda s: (s["window_start"], s["alert_id"])
    )
    lake_links: list[tuple[str, str, str]] = []
    width, timeline, traffic = 0, [], None
    if lake_con is not None:
        lake_links = lake_ring_links(lake_con, incident)
        width, start, end, timeline = lake_timeline(lake_con, incident)
        traffic = timeline_picture(timeline, width, start, end, incident) if timeline else None
    picture = lay_out_ring(incident["account_ids"], ring_links(signals, lake_links))
    return {
        "incident": incident,
        "deliveries": record["deliveries"],
        "signals": [
            {**signal, "evidence_items": _evidence_items(signal.get("evidence") or {})} for signal in signals
        ],
        "ring": picture,
        "timeline": timeline,
        "bucket_minutes": width,
        "traffic": traffic,
        "lake_note": lake_note,
        "generated_at": format_event_time(dt.datetime.now(dt.UTC)),
    }


@contextlib.contextmanager
def lake_connection(lake_dir: Path):
    """(connection, None) over the lake, or (None, why not): without a lake a page draws what its signals
    name and says so."""
    from pipelines.lake.analyst import open_lake

    if not lake_dir.is_dir():
        yield None, f"no lake at {lake_dir}"
        return
    con = open_lake(lake_dir)
    try:
        yield con, None
    finally:
        con.close()


def build_page_data(store: AlertStore, incident_id: str, lake_dir: Path) -> dict[str, Any]:
    with lake_connection(lake_dir) as (con, note):
        return page_data(store, incident_id, con, note)


def write_pages(
    store: AlertStore, incident_ids: list[str], directory: Path, lake_con=None, lake_note: str | None = None
) -> list[Path]:
    """Each incident's page into `directory`, named as notifications link it."""
    pages = []
    for incident_id in incident_ids:
        data = page_data(store, incident_id, lake_con, lake_note)
        pages.append(write_page(data, directory / page_file_name(incident_id)))
    return pages


@functools.cache
def _page_template():
    """Compiled once per process: detect writes a page per changed incident."""
    return template_environment().get_template("incident.html.j2")


def render_page(data: dict[str, Any]) -> str:
    return _page_template().render(data=data, hub_colours=HUB_COLOURS)


def write_page(data: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(data), "utf-8")
    return path
