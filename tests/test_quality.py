"""Data-quality gates: expectation suites, `usagewatch validate`, data-quality alerts, degraded detections."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest
from lakefixture import write_events, write_table

from pipelines.commands.cli import main as usagewatch
from pipelines.detect.detections import run_detections
from pipelines.incidents.alert_state import AlertStore
from pipelines.lake.analyst import open_lake
from pipelines.lake.layout import ACCOUNT_MINUTE, COUNTRY_MINUTE, EVENTS
from pipelines.quality import gates as quality
from pipelines.stream.contracts import validate_alert, validate_incident

DAY = "2026-11-20"
CLEAN_HOUR, DEFECT_HOUR = 8, 9
PLACES = {
    "US": (40.71, -74.0),
    "DE": (52.52, 13.4),
    "IR": (35.69, 51.39),
    "JP": (35.68, 139.65),
    "FR": (48.86, 2.35),
}
COUNTRY_OF_ACCOUNT = ["US", "DE", "IR", "JP", "FR", "US"]
RESTRICTED_ACCOUNT = "acct_2"  # always in IR (restricted since 2000 in schemas/reference)


def fixture_events() -> list[dict]:
    """60 events per hour; the DEFECT_HOUR has 40% null country and one negative token count."""
    events = []
    for hour in (CLEAN_HOUR, DEFECT_HOUR):
        for i in range(60):
            account = i % 6
            country = COUNTRY_OF_ACCOUNT[account]
            latitude, longitude = PLACES[country]
            if hour == DEFECT_HOUR and i % 5 < 2:  # 24 of 60 = 40% without geo
                country, latitude, longitude = None, None, None
            events.append(
                {
                    "event_id": f"evt-{hour}-{i}",
                    "event_time": f"{DAY}T{hour:02d}:{i // 2:02d}:{(i * 7) % 60:02d}.000Z",
                    "account_id": f"acct_{account}",
                    "api_key_id": f"key_{account}",
                    "org_id": None,
                    "source_ip": f"203.0.113.{account + 1}",
                    "country": country,
                    "latitude": latitude,
                    "longitude": longitude,
                    "asn": 64500 + account,
                    "asn_type": "residential",
                    "model": "model-large",
                    "endpoint": "/v1/messages",
                    "input_tokens": 100 + i,
                    "output_tokens": -5 if (hour == DEFECT_HOUR and i == 7) else 200 + 3 * i,
                    # the restricted account is refused every other time
                    "status_code": 403 if account == 2 and (i // 6) % 2 else 200,
                    "request_tags": [],
                }
            )
    return events


def _minute(event_time: str) -> str:
    return event_time[:16] + ":00.000Z"


def _window_end(window_start: str) -> str:
    start = dt.datetime.fromisoformat(window_start)
    return (start + dt.timedelta(minutes=1)).isoformat().replace("+00:00", ".000Z")


def aggregate_rows(events: list[dict]) -> tuple[list[dict], list[dict]]:
    """account_minute and country_minute rows exactly as the Flink job would emit them."""
    by_account, by_country = defaultdict(list), defaultdict(list)
    for event in events:
        by_account[(_minute(event["event_time"]), event["account_id"])].append(event)
        by_country[(_minute(event["event_time"]), event["country"])].append(event)
    accounts = [
        {
            "window_start": start,
            "window_end": _window_end(start),
            "account_id": account,
            "requests": len(group),
            "input_tokens": sum(e["input_tokens"] for e in group),
            "output_tokens": sum(e["output_tokens"] for e in group),
            "distinct_ips": len({e["source_ip"] for e in group}),
            "distinct_countries": len({e["country"] for e in group if e["country"]}),
            "distinct_asns": len({e["asn"] for e in group}),
            "distinct_prompt_fingerprints": 0,
            "reasoning_requests": 0,
            "error_requests": sum(e["status_code"] >= 400 for e in group),
            "first_seen": min(e["event_time"] for e in group),
            "last_seen": max(e["event_time"] for e in group),
        }
        for (start, account), group in by_account.items()
    ]
    countries = [
        {
            "window_start": start,
            "window_end": _window_end(start),
            "country": country,
            "requests": len(group),
            "distinct_accounts": len({e["account_id"] for e in group}),
            "input_tokens": sum(e["input_tokens"] for e in group),
            "output_tokens": sum(e["output_tokens"] for e in group),
        }
        for (start, country), group in by_country.items()
    ]
    return accounts, countries


def build_fixture_lake(lake: Path) -> list[dict]:
    events = fixture_events()
    write_events(lake, events)
    accounts, countries = aggregate_rows(events)
    write_table(lake, ACCOUNT_MINUTE, accounts, time_column="window_start")
    write_table(lake, COUNTRY_MINUTE, countries, time_column="window_start")
    return events


def write_config(directory: Path, lake: Path) -> Path:
    config = directory / "usagewatch.yml"
    config.write_text(
        f"lake:\n  path: {lake}\n"
        f"state:\n  path: {directory / 'state.duckdb'}\n  audit_log: {directory / 'audit.jsonl'}\n"
        "routing:\n  sinks:\n"
        f"    - {{name: file, type: jsonl, path: {directory / 'notifications.jsonl'}, min_severity: info}}\n"
        f"quality:\n  results_dir: {directory / 'quality'}\n  reports_dir: {directory / 'reports'}\n"
    )
    return config


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> dict:
    """A fixture lake with a defective hour, validated once through the command line."""
    directory = tmp_path_factory.mktemp("quality")
    lake = directory / "lake"
    events = build_fixture_lake(lake)
    config = write_config(directory, lake)
    exit_code = usagewatch(["validate", "--config", str(config)])
    return {"directory": directory, "lake": lake, "config": config, "events": events, "exit_code": exit_code}


def _stored_results(directory: Path) -> dict[tuple[str, str, str], tuple[bool, list[dict]]]:
    con = duckdb.connect(str(directory / "state.duckdb"), read_only=True)
    try:
        rows = con.execute("select table_name, hr, suite, success, failing from quality_results").fetchall()
    finally:
        con.close()
    return {(table, hr, suite): (success, json.loads(failing)) for table, hr, suite, success, failing in rows}


def test_every_suite_loads_and_explains_each_expectation():
    suites = quality.load_suites()
    assert [table.name for table in quality.gated_tables(suites)] == [
        "events", "account_minute", "country_minute", "ip_minute", "asn_minute"
    ]  # fmt: skip
    for suite in suites:
        for expectation in suite.definition["expectations"]:
            assert expectation["meta"]["why"], f"{suite.path}: {expectation['type']} has no meta.why"


def test_a_broken_suite_file_is_named_with_its_line(tmp_path):
    (tmp_path / "broken.json").write_text('{\n  "name": "broken",\n  "expectations": [,]\n}\n')
    with pytest.raises(quality.QualityError, match=r"broken\.json:3: invalid JSON"):
        quality.load_suites(tmp_path)


def test_the_defective_hour_fails_and_the_clean_hour_passes(validated):
    assert validated["exit_code"] == 1  # validate exits 1 when any suite failed
    results = _stored_results(validated["directory"])
    clean_hr, defect_hr = f"{CLEAN_HOUR:02d}", f"{DEFECT_HOUR:02d}"
    assert all(success for (_, hr, _), (success, _) in results.items() if hr == clean_hr)
    success, failing = results[("events", defect_hr, "events")]
    assert not success
    failed = {(item["expectation"], item["column"]) for item in failing}
    assert failed == {
        ("expect_column_values_to_not_be_null", "country"),
        ("expect_column_values_to_not_be_null", "latitude"),
        ("expect_column_values_to_be_between", "output_tokens"),
    }
    # The negative token count flows into the aggregates of its minute; they still add up to the events.
    for table in ("account_minute", "country_minute"):
        success, failing = results[(table, defect_hr, table)]
        assert not success
        assert {(item["expectation"], item["column"]) for item in failing} == {
            ("expect_column_values_to_be_between", "output_tokens")
        }
    assert results[("account_minute", defect_hr, "aggregates_reconciliation")][0]
    # Great Expectations' own result file is kept per suite and partition.
    gx_result = (
        validated["directory"] / "quality" / "events" / f"dt={DAY}" / f"hr={defect_hr}" / "events.json"
    )
    assert json.loads(gx_result.read_text())["success"] is False


def test_a_failed_suite_opens_a_data_quality_incident_at_once(validated):
    notifications = validated["directory"] / "notifications.jsonl"
    routed = [json.loads(line) for line in notifications.read_text().splitlines()]
    # One immediate signal per failed suite and partition (the events and both aggregates of the defective
    # hour), each its own incident: broken data is nobody's campaign.
    by_partition = {incident["entities"][0]["id"]: incident for incident in routed}
    assert set(by_partition) == {
        f"{table}/dt={DAY}/hr={DEFECT_HOUR:02d}" for table in ("events", "account_minute", "country_minute")
    }
    for incident in routed:
        validate_incident(incident)
        assert incident["change"] == "opened" and incident["detection_ids"] == [
            quality.DATA_QUALITY_DETECTION
        ]
        assert incident["entities"][0]["type"] == "partition" and incident["account_ids"] == []
    assert by_partition[f"events/dt={DAY}/hr={DEFECT_HOUR:02d}"]["severity"] == "high"
    with AlertStore.open(validated["directory"] / "state.duckdb") as store:
        signals = [json.loads(row["alert"]) for row in store.list_alerts()]
    for signal in signals:
        validate_alert(signal)
    events_signal = next(s for s in signals if s["entity_id"].startswith("events/"))
    assert "expect_column_values_to_not_be_null" in {
        item["expectation"] for item in events_signal["evidence"]["failing_expectations"]
    }
    audit_kinds = [
        json.loads(line)["kind"] for line in (validated["directory"] / "audit.jsonl").read_text().splitlines()
    ]
    assert audit_kinds == ["signal"] * 3 + ["incident"] * 3


def test_detections_over_the_defective_hour_are_marked_degraded(validated):
    health = quality.partition_health(validated["directory"] / "state.duckdb", validated["lake"])
    status = {(item.table, item.hr): item.status for item in health}
    assert status[("events", f"{DEFECT_HOUR:02d}")] == "failed"
    assert status[("events", f"{CLEAN_HOUR:02d}")] == "passed"

    note = quality.degraded_note(health)
    assert note is not None
    assert f"events dt={DAY} hr={DEFECT_HOUR:02d} failed" in note
    assert "expect_column_values_to_not_be_null(country)" in note

    con = open_lake(validated["lake"])
    try:
        alerts = run_detections(con, only="restricted_region_access")
    finally:
        con.close()
    marked = quality.mark_degraded(alerts, health)
    by_hour = {
        alert["window_start"][11:13]: alert for alert in marked if RESTRICTED_ACCOUNT in alert["account_ids"]
    }
    assert set(by_hour) == {f"{CLEAN_HOUR:02d}", f"{DEFECT_HOUR:02d}"}
    assert "data_quality" not in by_hour[f"{CLEAN_HOUR:02d}"]["evidence"]
    degraded = by_hour[f"{DEFECT_HOUR:02d}"]["evidence"]["data_quality"]
    assert degraded["status"] == "degraded"
    assert any("expect_column_values_to_be_between(output_tokens)" in text
               for partition in degraded["partitions"] for text in partition["failing"])  # fmt: skip
    for alert in marked:
        validate_alert(alert)

    # A range that only covers the clean hour is not degraded.
    start = dt.datetime.fromisoformat(f"{DAY}T{CLEAN_HOUR:02d}:00:00+00:00")
    clean_only = quality.partition_health(
        validated["directory"] / "state.duckdb", validated["lake"], start, start + dt.timedelta(hours=1)
    )
    assert clean_only and quality.degraded_note(clean_only) is None


def test_new_files_after_validation_make_a_partition_unvalidated(validated, tmp_path):
    lake = tmp_path / "lake"
    build_fixture_lake(lake)
    state = tmp_path / "state.duckdb"
    suites = quality.load_suites()
    assert {item.status for item in quality.partition_health(state, lake, suites=suites)} == {"unvalidated"}

    partitions = quality.committed_partitions(lake, [EVENTS], DAY)
    results = quality.validate_partitions(lake, tmp_path / "results", partitions[:1], suites)
    con = duckdb.connect(str(state))
    quality.store_results(con, results)
    con.close()
    health = {(h.table, h.hr): h for h in quality.partition_health(state, lake, suites=suites)}
    assert health[("events", f"{CLEAN_HOUR:02d}")].status == "passed"

    # A late file lands in the validated hour: the old verdict no longer covers it.
    extra = partitions[0].folder / "part-late-1"
    extra.write_bytes((partitions[0].folder / "part-fixture-0").read_bytes())
    health = {(h.table, h.hr): h for h in quality.partition_health(state, lake, suites=suites)}
    assert health[("events", f"{CLEAN_HOUR:02d}")].status == "unvalidated"
    assert "files changed since validation" in " ".join(health[("events", f"{CLEAN_HOUR:02d}")].failing)


def test_reconciliation_fails_when_account_aggregates_miss_events(tmp_path):
    lake = tmp_path / "lake"
    events = [event for event in fixture_events() if event["event_time"][11:13] == f"{CLEAN_HOUR:02d}"]
    write_events(lake, events)
    accounts, countries = aggregate_rows(events)
    accounts[0]["requests"] += 1  # the job counted one request that the archive does not have
    write_table(lake, ACCOUNT_MINUTE, accounts, time_column="window_start")
    write_table(lake, COUNTRY_MINUTE, countries, time_column="window_start")
    suites = [suite for suite in quality.load_suites() if suite.name == "aggregates_reconciliation"]
    partitions = quality.committed_partitions(lake, [ACCOUNT_MINUTE])
    [result] = quality.validate_partitions(lake, tmp_path / "results", partitions, suites)
    assert not result.success
    assert [failure.label for failure in result.failing] == [
        "expect_column_pair_values_to_be_equal(account_requests = event_requests)"
    ]


def test_validate_rejects_a_missing_lake_and_a_bad_date(tmp_path, capsys):
    config = write_config(tmp_path, tmp_path / "absent")
    assert usagewatch(["validate", "--config", str(config)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        usagewatch(["validate", "--config", str(config), "--date", "20-11-2026"])
    assert "is not a date" in capsys.readouterr().err
