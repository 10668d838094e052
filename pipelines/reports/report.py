"""`usagewatch report`: the compliance summary of one day or week, as HTML, Markdown and JSON.

Figures come from the lake (read-only DuckDB), incidents, rings and signals from the state database,
data-quality health from pipelines/quality/gates.py, and the audit log's head hash ties the report to the log.
Charts are Altair specs rendered to PNG by vl-convert: embedded as data URIs in the HTML (one
self-contained file that opens offline) and written beside the Markdown. The JSON twin holds every
figure the others show.
After writing, the report itself is appended to the audit log (kind "report", with file hashes).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipelines.incidents.alert_state import AlertStore, open_state_read_only
from pipelines.incidents.alerts import SEVERITIES
from pipelines.incidents.audit import AuditLog
from pipelines.incidents.routing import PAGES_FOLDER, incident_pages_dir, page_file_name
from pipelines.infra.paths import SQL_DIR
from pipelines.infra.rendering import to_json_value
from pipelines.lake.analyst import open_lake
from pipelines.quality.gates import degraded_note, partition_health
from pipelines.reports.incident_page import lake_connection, write_pages
from pipelines.reports.templating import template_environment

PERIODS = ("daily", "weekly")
TOP_ACCOUNTS = 10
CHART_COUNTRIES = 15
SEVERITY_COLOURS = ["#95a5a6", "#5dade2", "#f4d03f", "#e67e22", "#922b21"]  # info .. critical, as SEVERITIES
# --- queries ----------------------------------------------------------------------------------------

REPORT_SQL_DIR = SQL_DIR / "reports"


class ReportError(RuntimeError):
    """A report query could not be read, or Chromium could not print the PDF; names the file."""


# Widths the time chart may use, finest first: the finest that draws at most TIME_CHART_SLOTS bars over
# the traffic's span wins (a weekly report always charts days).
SLOT_MINUTES = (1, 5, 15, 60)
TIME_CHART_SLOTS = 60


@functools.cache
def report_sql(name: str) -> str:
    """sql/reports/<name>.sql, the text of one of the report's queries."""
    path = REPORT_SQL_DIR / f"{name}.sql"
    try:
        return path.read_text("utf-8")
    except OSError as error:
        raise ReportError(f"{path}: cannot read the report query ({error.strerror})") from None


def slot_minutes(period_kind: str, first_event: str | None, last_event: str | None) -> int:
    """The time chart's slot width: days for a week; for a day, the finest width that keeps the chart
    readable over the span the traffic actually covers (RFC 3339 bounds, None when there is none)."""
    if period_kind == "weekly":
        return 24 * 60
    span = (
        dt.datetime.fromisoformat(last_event) - dt.datetime.fromisoformat(first_event)
        if first_event and last_event
        else dt.timedelta(0)
    )
    fitting = (width for width in SLOT_MINUTES if span / dt.timedelta(minutes=width) < TIME_CHART_SLOTS)
    return next(fitting, SLOT_MINUTES[-1])


# --- period -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    kind: str  # daily | weekly
    start: dt.datetime  # naive UTC, inclusive
    end: dt.datetime  # naive UTC, exclusive

    @property
    def label(self) -> str:
        if self.kind == "daily":
            return self.start.date().isoformat()
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def title(self) -> str:
        if self.kind == "daily":
            return f"Daily compliance summary, {self.start:%A %d %B %Y} (UTC)"
        last_day = self.end - dt.timedelta(days=1)
        return f"Weekly compliance summary, {self.label}: {self.start:%d %b} – {last_day:%d %b %Y} (UTC)"


def report_period(kind: str, day: dt.date | None, today: dt.date | None = None) -> Period:
    """daily: the given day (default yesterday); weekly: the ISO week holding it (default last week)."""
    today = today or dt.datetime.now(dt.UTC).date()
    if kind == "daily":
        start = day or today - dt.timedelta(days=1)
        end = start + dt.timedelta(days=1)
    else:
        anchor = day or today - dt.timedelta(days=7)
        start = anchor - dt.timedelta(days=anchor.weekday())
        end = start + dt.timedelta(days=7)
    return Period(kind, dt.datetime.combine(start, dt.time()), dt.datetime.combine(end, dt.time()))


# --- gathering ----------------------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, Any] | None = None) -> list[dict]:
    cursor = con.execute(sql, parameters or {})
    columns = [column[0] for column in cursor.description]
    return [
        {name: to_json_value(value) for name, value in zip(columns, row, strict=True)}
        for row in cursor.fetchall()
    ]


def _state_rows(state_file: Path, table: str, query: str, period: Period) -> list[dict[str, Any]]:
    """Rows of one state table for the period; [] when there is no state (or no such table) yet."""
    if not state_file.exists():
        return []
    con = open_state_read_only(state_file)
    try:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [table]
        ).fetchone()[0]
        return _rows(con, report_sql(query), {"start": period.start, "end": period.end}) if exists else []
    finally:
        con.close()


def _stored_signals(state_file: Path, period: Period) -> list[dict[str, Any]]:
    """Signals whose window starts in the period, with lifecycle."""
    return _state_rows(state_file, "signals", "stored_signals", period)


def _stored_incidents(state_file: Path, period: Period) -> list[dict[str, Any]]:
    """Incidents active in the period (event time), most severe first; merged ones are counted once,
    in the incident they were merged into."""
    rows = _state_rows(state_file, "incidents", "stored_incidents", period)
    for row in rows:
        row["incident"] = json.loads(row["incident"])
    return sorted(
        rows,
        key=lambda r: (
            -SEVERITIES.index(r["incident"]["severity"]),
            -r["incident"]["risk_score"],
            r["incident_id"],
        ),
    )


def _signal_summary(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per detection and severity: how many signals, and where they stand (duplicates counted apart)."""
    counts: Counter = Counter()
    for row in stored:
        key = (row["detection_id"], row["severity"])
        counts[key + ("total",)] += 1
        counts[key + ("suppressed" if row["suppressed_by"] else row["status"],)] += 1
    keys = sorted({key[:2] for key in counts}, key=lambda k: (k[0], -SEVERITIES.index(k[1])))
    return [
        {
            "detection_id": detection,
            "severity": severity,
            "signals": counts[(detection, severity, "total")],
            **{
                status: counts[(detection, severity, status)]
                for status in ("open", "acknowledged", "resolved")
            },
            "suppressed": counts[(detection, severity, "suppressed")],
        }
        for detection, severity in keys
    ]


def _overlaps(start: str, end: str, periods: list[dict[str, Any]]) -> bool:
    """Whether [start, end] (RFC 3339 text, as the periods) meets any of the periods."""
    return any(p["start"] <= end and start < p["end"] for p in periods)


def _degraded_periods(health) -> list[dict[str, Any]]:
    """Contiguous hours with any failed or unvalidated partition, merged, with what is wrong."""
    by_hour: dict[dt.datetime, list] = {}
    for item in health:
        if item.status != "passed":
            by_hour.setdefault(item.start, []).append(item)
    periods: list[dict[str, Any]] = []
    for hour in sorted(by_hour):
        items = by_hour[hour]
        details = [f"{item.table} {item.status}" + (f": {'; '.join(item.failing)}" if item.failing else "")
                   for item in items]  # fmt: skip
        if periods and periods[-1]["_end"] == hour:
            periods[-1]["_end"] = hour + dt.timedelta(hours=1)
            periods[-1]["details"] += [f"hr={hour:%H} {text}" for text in details]
        else:
            periods.append({"_start": hour, "_end": hour + dt.timedelta(hours=1),
                            "details": [f"hr={hour:%H} {text}" for text in details]})  # fmt: skip
    return [
        {"start": to_json_value(p["_start"]), "end": to_json_value(p["_end"]), "details": p["details"]}
        for p in periods
    ]


def gather(lake_dir: Path, state_file: Path, period: Period, head_hash: str, progress=None) -> dict[str, Any]:
    """Every figure of the report, JSON-ready (this is the JSON twin)."""
    steps = 6
    step = progress or (lambda index, total, message: None)
    con = open_lake(lake_dir, read_only=True)
    try:
        con.execute(
            report_sql("period_events").format(
                start=period.start.isoformat(sep=" "),
                end=period.end.isoformat(sep=" "),
                first_day=period.start.date().isoformat(),
                last_day=(period.end - dt.timedelta(microseconds=1)).date().isoformat(),
            )
        )
        step(1, steps, "traffic")
        totals = _rows(con, report_sql("totals"))[0]
        traffic_by_country = _rows(con, report_sql("traffic_by_country"))
        slot = slot_minutes(period.kind, totals["first_event"], totals["last_event"])
        traffic_over_time = _rows(con, report_sql("traffic_over_time"), {"slot_minutes": slot})
        step(2, steps, "restricted-region access")
        restricted_access = _rows(con, report_sql("restricted_access"))
        step(3, steps, "top accounts")
        top_accounts = _rows(con, report_sql("top_accounts"), {"top": TOP_ACCOUNTS})
        period_bounds = {"start": period.start.replace(tzinfo=None), "end": period.end.replace(tzinfo=None)}
        late_events = _rows(con, report_sql("late_events"), period_bounds)[0]
        dead_letters = _rows(con, report_sql("dead_letters"), period_bounds)[0]
        step(4, steps, "incidents and rings")
        stored = _stored_incidents(state_file, period)
        rings = []
        for row in stored:
            incident = row["incident"]
            if len(incident["account_ids"]) < 2:
                continue
            volume = _rows(con, report_sql("ring_volume"), {"accounts": incident["account_ids"]})[0]
            rings.append(
                {
                    "incident_id": row["incident_id"],
                    "title": incident["title"],
                    "detections": ", ".join(incident["detection_ids"]),
                    "severity": incident["severity"],
                    "status": incident["status"],
                    "accounts": len(incident["account_ids"]),
                    "requests": volume["requests"],
                    "output_tokens": volume["output_tokens"],
                    "first_seen": incident["first_seen"],
                }
            )
        rings.sort(key=lambda ring: (-ring["accounts"], -ring["output_tokens"], ring["incident_id"]))
    finally:
        con.close()
    step(5, steps, "data quality")
    health = partition_health(state_file, lake_dir, period.start, period.end)
    degraded = _degraded_periods(health)
    status_counts = Counter(item.status for item in health)
    incidents = [
        {
            "incident_id": row["incident_id"],
            "title": row["incident"]["title"],
            "severity": row["incident"]["severity"],
            "risk_score": row["incident"]["risk_score"],
            "detections": ", ".join(row["incident"]["detection_ids"]),
            "accounts": len(row["incident"]["account_ids"]),
            "signals": row["incident"]["signal_count"],
            "first_seen": row["incident"]["first_seen"],
            "last_seen": row["incident"]["last_seen"],
            "status": row["incident"]["status"],
            "page": f"{PAGES_FOLDER}/{page_file_name(row['incident_id'])}",  # relative: beside the report
            "acknowledged_by": row["ack_by"],
            "acknowledged_at": row["ack_at"],
            "resolved_by": row["resolved_by"],
            "degraded": "data_quality" in row["incident"]["evidence"]
            or _overlaps(row["incident"]["first_seen"], row["incident"]["last_seen"], degraded),
        }
        for row in stored
    ]
    step(6, steps, "assembling")
    return {
        "report": {
            "title": period.title,
            "period": period.kind,
            "label": period.label,
            "start": to_json_value(period.start),
            "end": to_json_value(period.end),
            "generated_at": to_json_value(dt.datetime.now(dt.UTC)),
            "lake": str(lake_dir),
            "audit_head_hash": head_hash,
        },
        "totals": totals,
        "traffic_by_country": traffic_by_country,
        "traffic_over_time": {"slot_minutes": slot, "slots": traffic_over_time},
        "restricted_access": restricted_access,
        "incidents": incidents,
        "rings": rings,
        "signals_by_detection": _signal_summary(_stored_signals(state_file, period)),
        "top_accounts": top_accounts,
        "data_quality": {
            "partitions": {status: status_counts[status] for status in ("passed", "failed", "unvalidated")},
            "problems": [item.to_json() for item in health if item.status != "passed"],
            "degraded_periods": degraded,
            "note": degraded_note(health),
            "late_events": late_events,
            "dead_letters": dead_letters,
        },
    }


# --- charts -----------------------------------------------------------------------------------------


def chart_specs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Vega-Lite specs (via Altair) for the sections that have data."""
    import altair as alt
    import pandas as pd

    specs: dict[str, dict[str, Any]] = {}
    palette = alt.Scale(domain=["restricted regions", "other regions"], range=["#c0392b", "#2e86c1"])
    if data["traffic_by_country"]:
        frame = pd.DataFrame(chart_countries(data["traffic_by_country"]))
        frame["region"] = frame["restricted"].map({True: "restricted regions", False: "other regions"})
        specs["traffic_by_country"] = (
            alt.Chart(frame, title=f"Requests by country (top {CHART_COUNTRIES} and every restricted one)")
            .mark_bar()
            .encode(
                x=alt.X("requests:Q", title="requests"),
                y=alt.Y("country:N", sort="-x", title=None),
                color=alt.Color("region:N", scale=palette, title=None),
            )
            .properties(width=520)
            .to_dict()
        )
    over_time = data["traffic_over_time"]
    if over_time["slots"]:
        frame = pd.DataFrame(over_time["slots"])
        width = over_time["slot_minutes"]
        # Ordinal slot labels keep single bars readable; a week reads per day, a day per clock time.
        starts = pd.to_datetime(frame["slot_start"])
        frame["slot"] = starts.dt.strftime("%a %d %b" if width >= 24 * 60 else "%H:%M")
        title = "Requests per day (UTC)" if width >= 24 * 60 else (
            "Requests per hour (UTC)" if width == 60 else f"Requests per {width} minute(s) (UTC)"
        )  # fmt: skip
        specs["traffic_over_time"] = (
            alt.Chart(frame, title=title)
            .mark_bar()
            .encode(
                x=alt.X("slot:O", title=None, sort=None, axis=alt.Axis(labelAngle=0, labelOverlap="greedy")),
                y=alt.Y("sum(requests):Q", title="requests"),
                color=alt.Color("region:N", scale=palette, title=None),
            )
            .properties(width=520, height=180)
            .to_dict()
        )
    if data["signals_by_detection"]:
        frame = pd.DataFrame(data["signals_by_detection"])
        specs["signals_by_detection"] = (
            alt.Chart(frame, title="Signals by detection and severity")
            .mark_bar()
            .encode(
                x=alt.X("sum(signals):Q", title="signals", axis=alt.Axis(format="d", tickMinStep=1)),
                y=alt.Y("detection_id:N", title=None),
                color=alt.Color(
                    "severity:N",
                    scale=alt.Scale(domain=list(SEVERITIES), range=SEVERITY_COLOURS),
                ),
            )
            .properties(width=520)
            .to_dict()
        )  # fmt: skip
    if data["top_accounts"]:
        frame = pd.DataFrame(data["top_accounts"])
        specs["top_accounts"] = (
            alt.Chart(frame, title="Top accounts by output tokens")
            .mark_bar(color="#7d3c98")
            .encode(
                x=alt.X("output_tokens:Q", title="output tokens"),
                y=alt.Y("account_id:N", sort="-x", title=None),
            )
            .properties(width=520)
            .to_dict()
        )
    return specs


def chart_countries(traffic_by_country: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The busiest CHART_COUNTRIES countries, plus every restricted country however small: the chart
    exists to show restricted-region traffic, so a cut must never hide it."""
    busiest = traffic_by_country[:CHART_COUNTRIES]
    return busiest + [row for row in traffic_by_country[CHART_COUNTRIES:] if row["restricted"]]


def render_charts(specs: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    import vl_convert

    return {name: vl_convert.vegalite_to_png(spec, scale=2) for name, spec in specs.items()}


# --- writing ----------------------------------------------------------------------------------------


def write_report(data: dict[str, Any], charts: dict[str, bytes], out_dir: Path) -> dict[str, Path]:
    """Write the HTML (charts embedded), the Markdown (charts beside it) and the JSON; return the paths."""
    stem = f"usagewatch-{data['report']['period']}-{data['report']['label']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_dir = out_dir / f"{stem}-charts"
    chart_dir.mkdir(exist_ok=True)
    chart_files = {}
    for name, png in charts.items():
        (chart_dir / f"{name}.png").write_bytes(png)
        chart_files[name] = f"{chart_dir.name}/{name}.png"
    data = {**data, "charts": chart_files}
    environment = template_environment()
    embedded = {
        name: "data:image/png;base64," + base64.b64encode(png).decode() for name, png in charts.items()
    }
    paths = {
        "html": out_dir / f"{stem}.html",
        "markdown": out_dir / f"{stem}.md",
        "json": out_dir / f"{stem}.json",
    }
    paths["html"].write_text(
        environment.get_template("report.html.j2").render(data=data, charts=embedded), "utf-8"
    )
    paths["markdown"].write_text(
        environment.get_template("report.md.j2").render(data=data, charts=chart_files), "utf-8"
    )
    paths["json"].write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", "utf-8")
    return paths


def write_incident_pages(data: dict[str, Any], state_file: Path, lake_dir: Path, out_dir: Path) -> list[Path]:
    """The period's incident pages beside the report, where its incident table links them."""
    incident_ids = [incident["incident_id"] for incident in data["incidents"]]
    if not incident_ids:
        return []
    con = open_state_read_only(state_file)
    try:
        with lake_connection(lake_dir) as (lake_con, lake_note):
            store = AlertStore(con, state_file)
            return write_pages(store, incident_ids, incident_pages_dir(out_dir), lake_con, lake_note)
    finally:
        con.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_report(
    audit_log: AuditLog, period: Period, data: dict[str, Any], head: str, paths: dict[str, Path]
) -> dict[str, Any]:
    """Append the written report to the audit log: its period, the head hash it quotes, its files' hashes."""
    return audit_log.append(
        "report",
        {
            "period": period.kind,
            "label": period.label,
            "start": data["report"]["start"],
            "end": data["report"]["end"],
            "head_hash_in_report": head,
            "files": {kind: {"path": str(path), "sha256": _sha256(path)} for kind, path in paths.items()},
        },
    )
