"""Signal state: stable ids raise nothing new on re-runs, suppression per dedup key, the signals commands.

Incidents, their lifecycle and the outbox: tests/test_incidents.py."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import duckdb
import pytest

from pipelines.commands import cli
from pipelines.incidents.alert_state import AlertStateError, AlertStore
from pipelines.incidents.alerts import alert_id, dedup_key
from pipelines.stream.contracts import validate_alert

NOW = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
SUPPRESSION = {"impossible_travel": 60}


def make_alert(entity: str, window_start: str, severity: str = "high") -> dict:
    key = dedup_key("impossible_travel", [entity])
    start = dt.datetime.fromisoformat(window_start)
    alert = {
        "alert_id": alert_id(key, start, SUPPRESSION["impossible_travel"]),
        "detection_id": "impossible_travel",
        "title": "Impossible travel between consecutive requests",
        "severity": severity,
        "entity_type": "account",
        "entity_id": entity,
        "account_ids": [entity],
        "window_start": window_start,
        "window_end": window_start.replace(":00.000Z", ":01.000Z"),
        "evidence": {"speed_kmh": 11000.0},
        "runbook": "Investigate: look. Respond: act.",
        "dedup_key": key,
        "created_at": "2026-03-02T00:00:00.000Z",
        "risk_score": 30,
        "immediate": False,
        "techniques": {"attack": ["T1078"], "atlas": ["AML.T0012"]},
    }
    validate_alert(alert)
    return alert


@pytest.fixture
def store(tmp_path):
    with AlertStore.open(tmp_path / "state" / "state.duckdb") as opened:
        yield opened


def test_rerun_raises_nothing_new_but_refreshes_evidence(store):
    alert = make_alert("acct-a", "2026-03-01T10:00:00.000Z")
    first = store.record_alerts([alert], SUPPRESSION, NOW)
    assert [a["alert_id"] for a in first.new] == [alert["alert_id"]]

    updated = {**alert, "evidence": {"speed_kmh": 12000.0}}
    second = store.record_alerts([updated], SUPPRESSION, NOW + dt.timedelta(minutes=5))

    assert second.new == [] and second.suppressed == []
    assert [a["alert_id"] for a in second.seen_again] == [alert["alert_id"]]
    record = store.get(alert["alert_id"])
    assert record["alert"]["evidence"] == {"speed_kmh": 12000.0}
    assert record["first_seen"] == NOW.replace(tzinfo=None)
    assert record["last_seen"] == (NOW + dt.timedelta(minutes=5)).replace(tzinfo=None)
    assert record["status"] == "open"


def test_same_dedup_key_within_the_window_is_suppressed(store):
    # 10:50 and 11:10 fall in different hourly id buckets, so they are different alerts...
    early = make_alert("acct-a", "2026-03-01T10:50:00.000Z")
    late = make_alert("acct-a", "2026-03-01T11:10:00.000Z")
    assert early["alert_id"] != late["alert_id"]

    result = store.record_alerts([late, early], SUPPRESSION, NOW)

    # ...but 20 minutes apart under a 60-minute suppression: one notification, the earliest.
    assert [a["alert_id"] for a in result.new] == [early["alert_id"]]
    assert result.suppressed == [(late, early["alert_id"])]
    assert store.get(late["alert_id"])["suppressed_by"] == early["alert_id"]


def test_after_the_window_the_same_key_notifies_again(store):
    store.record_alerts([make_alert("acct-a", "2026-03-01T10:00:00.000Z")], SUPPRESSION, NOW)
    later = make_alert("acct-a", "2026-03-01T11:00:00.000Z")  # exactly at suppressed_until

    result = store.record_alerts([later], SUPPRESSION, NOW)

    assert [a["alert_id"] for a in result.new] == [later["alert_id"]]


def test_other_entities_are_not_suppressed(store):
    result = store.record_alerts(
        [make_alert("acct-a", "2026-03-01T10:00:00.000Z"), make_alert("acct-b", "2026-03-01T10:00:00.000Z")],
        SUPPRESSION,
        NOW,
    )
    assert len(result.new) == 2


def test_a_signal_found_more_severe_keeps_the_higher_severity(store):
    info = make_alert("acct-a", "2026-03-01T10:00:00.000Z", severity="info")
    store.record_alerts([info], SUPPRESSION, NOW)

    store.record_alerts([{**info, "severity": "high"}], SUPPRESSION, NOW)
    assert store.get(info["alert_id"])["severity"] == "high"
    # a later run finding it less severe again does not downgrade it
    store.record_alerts([info], SUPPRESSION, NOW)
    assert store.get(info["alert_id"])["severity"] == "high"


def test_unknown_short_or_ambiguous_ids_are_refused(store):
    with pytest.raises(AlertStateError, match="no signal 'deadbeef'"):
        store.get("deadbeef")
    with pytest.raises(AlertStateError, match="too short"):
        store.get("abc")
    with pytest.raises(AlertStateError, match="no incident 'deadbeef'"):
        store.get_incident("deadbeef")


def test_list_filters_by_status_detection_and_minimum_severity(store):
    alerts = [
        make_alert("acct-a", "2026-03-01T10:00:00.000Z", "info"),
        make_alert("acct-b", "2026-03-01T10:00:00.000Z", "high"),
        make_alert("acct-c", "2026-03-01T10:00:00.000Z", "critical"),
    ]
    store.record_alerts(alerts, SUPPRESSION, NOW)

    assert {r["entity_id"] for r in store.list_alerts(min_severity="high")} == {"acct-b", "acct-c"}
    assert store.list_alerts(status="resolved") == []
    assert len(store.list_alerts(status="open", detection_id="impossible_travel")) == 3
    assert store.list_alerts(detection_id="other") == []


def test_a_held_database_is_reported_with_its_path(tmp_path):
    path = tmp_path / "state.duckdb"
    # Another process holds the file until its stdin closes.
    hold = (
        f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlertStateError, match="cannot open the state database"):
            AlertStore.open(path, wait_seconds=0)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with AlertStore.open(path, wait_seconds=30) as store:  # released: opens
        assert store.list_alerts() == []


def test_list_and_show_commands(tmp_path, capsys):
    path = tmp_path / "state.duckdb"
    alert = make_alert("acct-a", "2026-03-01T10:00:00.000Z", "critical")
    with AlertStore.open(path) as store:
        store.record_alerts(
            [alert, make_alert("acct-b", "2026-03-01T10:00:00.000Z", "low")], SUPPRESSION, NOW
        )

    assert cli.main(["signals", "list", "--state", str(path), "--severity", "high"]) == 0
    listed = capsys.readouterr().out
    assert alert["alert_id"][:12] in listed and "acct-b" not in listed and "(1 row)" in listed

    assert cli.main(["signals", "show", "--state", str(path), alert["alert_id"][:10]]) == 0
    shown = capsys.readouterr().out
    assert "[CRITICAL] Impossible travel" in shown and f"alert_id: {alert['alert_id']}" in shown

    # `alerts` is the deprecated name of the same command
    assert cli.main(["alerts", "show", "--state", str(path), "--json", alert["alert_id"]]) == 0
    assert json.loads(capsys.readouterr().out)["alert_id"] == alert["alert_id"]

    assert cli.main(["signals", "show", "--state", str(path), "ffffffff"]) == 1
    assert "no signal 'ffffffff'" in capsys.readouterr().err


def test_a_state_from_before_incidents_is_migrated(tmp_path):
    path = tmp_path / "state.duckdb"
    alert = make_alert("acct-a", "2026-03-01T10:00:00.000Z")
    con = duckdb.connect(str(path))  # the tables as the alert-era state created them
    con.execute(
        "create table alerts (alert_id varchar primary key, detection_id varchar not null, "
        "dedup_key varchar not null, severity varchar not null, entity_type varchar not null, "
        "entity_id varchar not null, window_start timestamp not null, first_seen timestamp not null, "
        "last_seen timestamp not null, status varchar not null, suppressed_by varchar, ack_by varchar, "
        "ack_note varchar, ack_at timestamp, resolved_by varchar, resolved_note varchar, "
        "resolved_at timestamp, alert json not null);"
        "create table outbox (alert_id varchar not null, sink varchar not null, action varchar not null, "
        "enqueued_at timestamp not null, attempts integer not null default 0, "
        "next_attempt_at timestamp not null, last_error varchar, delivered_at timestamp, "
        "primary key (alert_id, sink, action))"
    )
    con.execute(
        "insert into alerts values (?, 'impossible_travel', ?, 'high', 'account', 'acct-a', "
        "'2026-03-01 10:00:00', ?, ?, 'open', null, null, null, null, null, null, null, ?)",
        [alert["alert_id"], alert["dedup_key"], NOW, NOW, json.dumps(alert)],
    )
    con.execute(
        "insert into outbox values (?, 'file', 'trigger', ?, 0, ?, null, null)", [alert["alert_id"], NOW, NOW]
    )
    con.close()

    with AlertStore.open(path) as store:
        (record,) = store.list_alerts()
        assert record["window_end"] == dt.datetime(2026, 3, 1, 10, 0, 1) and record["incident_id"] is None
        assert store.pending_deliveries() == 0  # alerts are no longer routed on their own...
        kept = store.con.execute("select count(*) from legacy_alert_outbox").fetchone()[0]
        assert kept == 1  # ...but their undelivered notifications are kept aside, not dropped
        assert store.record_alerts([alert], SUPPRESSION, NOW).seen_again == [alert]
