"""`usagewatch report`: figures equal direct DuckDB queries, charts are real images, HTML renders cleanly."""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import duckdb
import pytest
from lakefixture import write_events, write_table
from test_quality import (
    CLEAN_HOUR,
    DAY,
    DEFECT_HOUR,
    RESTRICTED_ACCOUNT,
    build_fixture_lake,
    fixture_events,
    write_config,
)

from pipelines.commands.cli import main as usagewatch
from pipelines.incidents.alert_state import AlertStore
from pipelines.lake.analyst import open_lake
from pipelines.lake.layout import DEAD_LETTERS, LATE_EVENTS
from pipelines.reports import pdf, report

ACKNOWLEDGER = "compliance-officer@example.com"


@pytest.fixture(scope="module")
def daily(tmp_path_factory) -> dict:
    """Fixture lake (one defective hour), validated, detected (every component an incident, whatever the
    tuning), the restricted account's incident acknowledged, reported."""
    directory = tmp_path_factory.mktemp("report")
    lake = directory / "lake"
    build_fixture_lake(lake)
    config = write_config(directory, lake)
    config.write_text(config.read_text() + "incidents:\n  open_threshold: 1\n")
    assert usagewatch(["validate", "--config", str(config), "--no-alerts"]) == 1  # the defective hour fails
    assert usagewatch(["detect", "--lake", str(lake), "--config", str(config)]) == 0
    with AlertStore.open(directory / "state.duckdb") as store:
        restricted = [i for i in store.list_incidents() if RESTRICTED_ACCOUNT in i["incident"]["account_ids"]]
    ack = ["incidents", "ack", restricted[0]["incident_id"], "--by", ACKNOWLEDGER, "--note", "checked"]
    assert usagewatch([*ack, "--config", str(config)]) == 0
    out = directory / "reports"
    assert (
        usagewatch(["report", "--config", str(config), "--period", "daily", "--date", DAY, "--out", str(out)])
        == 0
    )
    stem = f"usagewatch-daily-{DAY}"
    return {
        "directory": directory,
        "lake": lake,
        "out": out,
        "data": json.loads((out / f"{stem}.json").read_text()),
        "html": (out / f"{stem}.html").read_text(),
        "markdown": (out / f"{stem}.md").read_text(),
        "html_path": out / f"{stem}.html",
    }


def _query(lake: Path, sql: str) -> list[tuple]:
    con = open_lake(lake)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_traffic_figures_equal_direct_duckdb_queries(daily):
    data, lake = daily["data"], daily["lake"]
    [(requests, accounts)] = _query(
        lake, f"select count(*), count(distinct account_id) from events where dt = '{DAY}'"
    )
    assert (data["totals"]["requests"], data["totals"]["accounts"]) == (requests, accounts) == (120, 6)
    expected_countries = _query(
        lake,
        f"select coalesce(country, 'unknown'), count(*), count(*) filter (where status_code < 400), "
        f"count(distinct account_id), sum(output_tokens) from events where dt = '{DAY}' group by all",
    )
    reported = {
        (row["country"], row["requests"], row["served"], row["accounts"], row["output_tokens"])
        for row in data["traffic_by_country"]
    }
    assert reported == set(expected_countries)
    assert {row["country"] for row in data["traffic_by_country"] if row["restricted"]} == {"IR"}


def test_restricted_access_counts_attempted_and_served(daily):
    data, lake = daily["data"], daily["lake"]
    [(attempted, served)] = _query(
        lake,
        f"select count(*), count(*) filter (where status_code = 200) from events "
        f"where dt = '{DAY}' and country = 'IR'",
    )
    assert [
        (row["account_id"], row["attempted"], row["served"], row["refused"])
        for row in data["restricted_access"]
    ] == [(RESTRICTED_ACCOUNT, attempted, served, attempted - served)]
    assert 0 < served < attempted


def test_top_accounts_follow_output_volume(daily):
    data, lake = daily["data"], daily["lake"]
    expected = _query(
        lake,
        f"select account_id, sum(output_tokens) from events where dt = '{DAY}' group by 1 order by 2 desc, 1",
    )
    assert [(row["account_id"], row["output_tokens"]) for row in data["top_accounts"]] == expected


def test_incidents_rings_and_signals_match_the_state_database(daily):
    data = daily["data"]
    con = duckdb.connect(str(daily["directory"] / "state.duckdb"), read_only=True)
    try:
        signals = con.execute(
            "select detection_id, severity, count(*), count(*) filter (where status = 'acknowledged') "
            "from signals group by all"
        ).fetchall()
        incidents = con.execute("select incident_id, account_count from incidents").fetchall()
    finally:
        con.close()
    reported = {
        (r["detection_id"], r["severity"], r["signals"], r["acknowledged"])
        for r in data["signals_by_detection"]
    }
    assert reported == set(signals)
    assert sorted(i["incident_id"] for i in data["incidents"]) == sorted(i for i, _ in incidents)
    assert sorted(r["incident_id"] for r in data["rings"]) == sorted(i for i, count in incidents if count > 1)
    assert [i["acknowledged_by"] for i in data["incidents"] if i["status"] == "acknowledged"] == [
        ACKNOWLEDGER
    ]
    assert ACKNOWLEDGER in daily["html"] and ACKNOWLEDGER in daily["markdown"]


def test_the_report_names_the_failed_expectation_and_the_degraded_hour(daily):
    quality = daily["data"]["data_quality"]
    assert (
        quality["partitions"]["failed"] == 3
    )  # events, account_minute, country_minute of the defective hour
    assert [(p["start"], p["end"]) for p in quality["degraded_periods"]] == [
        (f"{DAY}T{DEFECT_HOUR:02d}:00:00.000Z", f"{DAY}T{DEFECT_HOUR + 1:02d}:00:00.000Z")
    ]
    for text in (daily["html"], daily["markdown"], quality["note"]):
        assert "expect_column_values_to_not_be_null(country)" in text
    start, end = f"{DAY}T{DEFECT_HOUR:02d}:00:00.000Z", f"{DAY}T{DEFECT_HOUR + 1:02d}:00:00.000Z"
    incidents = daily["data"]["incidents"]
    overlapping = {i["degraded"] for i in incidents if i["first_seen"] < end and start < i["last_seen"]}
    assert overlapping == {True}
    assert {i["degraded"] for i in incidents if i["last_seen"] <= start or i["first_seen"] >= end} <= {False}


def test_the_report_quotes_the_audit_head_and_is_audited_itself(daily):
    records = [json.loads(line) for line in (daily["directory"] / "audit.jsonl").read_text().splitlines()]
    head = daily["data"]["report"]["audit_head_hash"]
    last = records[-1]
    assert last["kind"] == "report"
    assert last["prev_hash"] == head == last["payload"]["head_hash_in_report"]
    assert head in daily["html"] and head in daily["markdown"]
    assert set(last["payload"]["files"]) == {"html", "markdown", "json"}


def test_each_incident_has_its_page_beside_the_report_linked_from_it(daily):
    incidents = daily["data"]["incidents"]
    assert incidents
    for incident in incidents:
        page = daily["out"] / incident["page"]
        assert page.parent == daily["out"] / "incidents" and incident["incident_id"] in page.read_text()
        assert (
            f'<a href="{incident["page"]}">' in daily["html"]
            and f"]({incident['page']})" in daily["markdown"]
        )


def test_account_ids_in_the_report_are_html_escaped(tmp_path):
    lake = tmp_path / "lake"
    hostile = '<script>alert("report")</script>'
    write_events(lake, [{**event, "account_id": hostile} for event in fixture_events()[:3]])
    period = report.report_period("daily", dt.date.fromisoformat(DAY))
    data = report.gather(lake, tmp_path / "state.duckdb", period, "0" * 64)
    assert data["top_accounts"][0]["account_id"] == hostile
    html = report.write_report(data, {}, tmp_path / "out")["html"].read_text()
    assert "<script" not in html and "&lt;script&gt;alert(&#34;report&#34;)&lt;/script&gt;" in html


def png_scanlines(png: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, filtered scanlines) of an 8-bit non-interlaced PNG; enough to tell blank from drawn."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, width, height, channels, data = 8, 0, 0, 0, b""
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        body = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8, "only 8-bit PNGs are checked here"
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            data += body
        position += 12 + length
    raw = zlib.decompress(data)
    stride = 1 + width * channels
    return width, height, [raw[row * stride : (row + 1) * stride] for row in range(height)]


def assert_not_blank(png: bytes) -> None:
    width, height, rows = png_scanlines(png)
    assert width > 100 and height > 100
    # A blank (one-colour) image has identical scanlines; bars, axes and text give many distinct ones.
    assert len(set(rows)) > 20


def test_charts_exist_are_embedded_and_are_not_blank(daily):
    charts = daily["data"]["charts"]
    assert set(charts) == {"traffic_by_country", "traffic_over_time", "signals_by_detection", "top_accounts"}
    for relative in charts.values():
        assert_not_blank((daily["out"] / relative).read_bytes())
        assert f"]({relative})" in daily["markdown"]
    assert daily["html"].count('src="data:image/png;base64,') == len(charts)


def test_the_html_is_self_contained(daily):
    html = daily["html"]
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html), "the report must not fetch anything"
    assert "<script" not in html and "<link" not in html


def test_blank_detection_catches_a_one_colour_image():
    import vl_convert

    blank = vl_convert.vegalite_to_png({"width": 200, "height": 200, "mark": "point", "data": {"values": []}})
    with pytest.raises(AssertionError):
        assert_not_blank(blank)


def _render(chromium: str, page: Path, directory: Path) -> tuple[Path, str]:
    """Open `page` in headless Chromium with a fresh profile: (screenshot, console log lines)."""
    screenshot = directory / f"{page.stem}.png"
    completed = subprocess.run(
        [chromium, *pdf.CHROMIUM_FLAGS, f"--user-data-dir={directory / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2000", f"--screenshot={screenshot}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    console = "\n".join(
        line for line in completed.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
    )
    return screenshot, console


def test_headless_chromium_renders_the_report_without_console_errors(daily, tmp_path):
    chromium = pdf.find_chromium()
    if chromium is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install chromium); the HTML rendering is unchecked"
        )
    # The capture must see console errors at all: a page that throws is reported.
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>")
    _, console = _render(chromium, broken, tmp_path)
    assert "Uncaught Error: boom" in console

    screenshot, console = _render(chromium, daily["html_path"], tmp_path)
    assert console == ""
    assert_not_blank(screenshot.read_bytes())


def test_late_events_are_counted_in_the_report(tmp_path):
    lake = tmp_path / "lake"
    on_time = fixture_events()[:3]
    write_events(lake, on_time)
    late = {**on_time[0], "event_id": "late-1", "watermark_at_arrival": f"{DAY}T{CLEAN_HOUR:02d}:59:00.000Z"}
    late.pop("request_tags", None)
    write_table(lake, LATE_EVENTS, [late], time_column="event_time")
    period = report.report_period("daily", dt.date.fromisoformat(DAY))
    data = report.gather(lake, tmp_path / "state.duckdb", period, "0" * 64)
    assert data["data_quality"]["late_events"]["events"] == 1
    assert data["data_quality"]["late_events"]["accounts"] == 1
    written = report.write_report(data, report.render_charts(report.chart_specs(data)), tmp_path / "out")
    for kind in ("html", "markdown"):
        assert "Late events" in written[kind].read_text() and "1 account(s)" in written[kind].read_text()


def test_dead_letters_for_an_event_time_out_of_bounds_are_counted_in_the_report(tmp_path):
    lake = tmp_path / "lake"
    write_events(lake, fixture_events()[:3])
    failed_at = f"{DAY}T{CLEAN_HOUR:02d}:30:00.000Z"
    letters = [
        {"reason": "event_time out of bounds: more than 300 s after the record arrived", "raw": "{}",
         "event_time": "9999-12-31T23:59:59.999Z", "failed_at": failed_at},
        {"reason": "event_time out of bounds: more than 63072000 s before the record arrived", "raw": "{}",
         "event_time": "1990-01-01T00:00:00.000Z", "failed_at": failed_at},
        {"reason": "invalid JSON: unexpected end", "raw": "{", "event_time": None, "failed_at": failed_at},
        # Another day's dead letter is not this report's.
        {"reason": "event_time out of bounds: more than 300 s after the record arrived", "raw": "{}",
         "event_time": "9999-12-31T23:59:59.999Z", "failed_at": "2026-01-01T00:00:00.000Z"},
    ]  # fmt: skip
    write_table(lake, DEAD_LETTERS, letters, time_column="failed_at")
    period = report.report_period("daily", dt.date.fromisoformat(DAY))
    data = report.gather(lake, tmp_path / "state.duckdb", period, "0" * 64)
    assert data["data_quality"]["dead_letters"] == {"records": 3, "event_time_out_of_bounds": 2}
    written = report.write_report(data, report.render_charts(report.chart_specs(data)), tmp_path / "out")
    for kind in ("html", "markdown"):
        assert "Dead letters" in written[kind].read_text()
        assert "2 for an event time out of bounds" in written[kind].read_text()


def test_the_country_chart_always_shows_restricted_countries_beyond_the_top_cut():
    busy = [{"country": f"C{rank:02d}", "restricted": False, "requests": 1000 - rank, "served": 1,
             "accounts": 1, "output_tokens": 1} for rank in range(report.CHART_COUNTRIES + 5)]  # fmt: skip
    quiet_restricted = {"country": "IR", "restricted": True, "requests": 3, "served": 0, "accounts": 1,
                        "output_tokens": 0}  # fmt: skip
    data = {"traffic_by_country": [*busy, quiet_restricted],
            "traffic_over_time": {"slot_minutes": 60, "slots": []},
            "signals_by_detection": [], "top_accounts": [], "report": {"period": "daily"}}  # fmt: skip
    values = report.chart_specs(data)["traffic_by_country"]
    charted = {row["country"] for dataset in values["datasets"].values() for row in dataset}
    assert "IR" in charted
    assert len(charted) == report.CHART_COUNTRIES + 1


@pytest.mark.parametrize(
    ("period", "span", "width"),
    [("daily", dt.timedelta(minutes=30), 1), ("daily", dt.timedelta(hours=3), 5),
     ("daily", dt.timedelta(hours=23), 60), ("daily", None, 1), ("weekly", dt.timedelta(hours=1), 1440)],
)  # fmt: skip
def test_the_time_chart_slot_fits_the_traffic_span(period, span, width):
    first = "2026-03-01T08:00:00Z"
    last = (dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC) + span).isoformat() if span is not None else None
    assert report.slot_minutes(period, first if span is not None else None, last) == width


def test_a_short_day_of_traffic_is_charted_in_many_slots_not_one_hourly_bar(daily):
    over_time = daily["data"]["traffic_over_time"]
    assert over_time["slot_minutes"] < 60
    assert len({slot["slot_start"] for slot in over_time["slots"]}) >= 6


def test_timestamps_in_the_html_sit_in_cells_that_do_not_wrap(daily):
    html = daily["html"]
    assert re.search(r"\.time \{ white-space: nowrap;", html)
    # Every timestamp the page shows went through the display filter into a .time element.
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", html)
    shown = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", html)
    in_time_elements = re.findall(r'class="time">\(?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d', html)
    assert shown and len(shown) == len(in_time_elements)


def test_a_missing_report_query_fails_naming_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPORT_SQL_DIR", tmp_path)
    report.report_sql.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=re.escape(str(tmp_path / "totals.sql"))):
            report.report_sql("totals")
    finally:
        report.report_sql.cache_clear()
