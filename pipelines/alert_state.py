"""Alert lifecycle state in one DuckDB file, and `usagewatch alerts list|show|ack|resolve`.

Tables:
- alerts: one row per alert_id ever raised (the alert JSON is the latest re-detection of it), with its
  lifecycle: open -> acknowledged -> resolved. An alert raised while another alert with the same
  dedup_key is within its suppression window is kept (so `alerts show` finds every id a detect run
  printed) but marks `suppressed_by` the alert that notified, and is never routed itself.
- suppressions: per dedup_key, the alert that last notified and the event time until which later
  alerts of that key are suppressed (window_start + the detection's suppression_minutes). Event time,
  not wall-clock time, so a replay of history suppresses exactly as the live run would have.
- outbox: one row per (alert, sink, action) to deliver; delivered_at stays null until a sink accepted
  it, so an unreachable sink gets it on a later run.
- lake_files / lake_partitions: which committed lake files `detect --every` has already seen, and which
  partitions are complete (Flink's _SUCCESS marker) so they are not listed again.

DuckDB lets one process hold the file at a time; every command opens it briefly and waits (bounded)
for another holder to finish, so `alerts ack` works while `detect --every` is running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines import audit, routing
from pipelines.alerts import SEVERITIES, headline
from pipelines.analyst import format_table
from pipelines.config import Config, ConfigError, load_config

DEFAULT_STATE_PATH = ".run/state/state.duckdb"  # relative to the configuration file
STATE_KEYS = {"path", "audit_log"}
STATUSES = ("open", "acknowledged", "resolved")
LOCK_WAIT_SECONDS = 30.0
_LOCK_POLL_SECONDS = 0.2

_SCHEMA = f"""
create table if not exists alerts (
    alert_id varchar primary key,
    detection_id varchar not null,
    dedup_key varchar not null,
    severity varchar not null,
    entity_type varchar not null,
    entity_id varchar not null,
    window_start timestamp not null,
    first_seen timestamp not null,   -- processing time of the first detect run that raised it
    last_seen timestamp not null,    -- processing time of the latest detect run that found it again
    status varchar not null check (status in ({", ".join(f"'{status}'" for status in STATUSES)})),
    suppressed_by varchar,
    ack_by varchar,
    ack_note varchar,
    ack_at timestamp,
    resolved_by varchar,
    resolved_note varchar,
    resolved_at timestamp,
    alert json not null
);
create table if not exists suppressions (
    dedup_key varchar primary key,
    alert_id varchar not null,
    suppressed_until timestamp not null
);
create table if not exists outbox (
    alert_id varchar not null,
    sink varchar not null,
    action varchar not null,
    enqueued_at timestamp not null,
    attempts integer not null default 0,
    next_attempt_at timestamp not null,
    last_error varchar,
    delivered_at timestamp,
    primary key (alert_id, sink, action)
);
create table if not exists lake_files (
    path varchar primary key,
    size bigint not null,
    processed_at timestamp not null
);
create table if not exists lake_partitions (
    partition_dir varchar primary key,
    completed_at timestamp not null
);
"""

_ALERT_COLUMNS = (
    "alert_id, detection_id, dedup_key, severity, entity_type, entity_id, window_start, first_seen, "
    "last_seen, status, suppressed_by, ack_by, ack_note, ack_at, resolved_by, resolved_note, resolved_at, "
    "alert"
)


class AlertStateError(ValueError):
    """An unknown alert, an invalid transition, or a state database that cannot be opened."""


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    """The state tables store naive UTC timestamps (the lake's convention)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _parse_time(text: str) -> dt.datetime:
    return _naive_utc(dt.datetime.fromisoformat(text))


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def state_section(config: Config) -> dict[str, Any]:
    return config.section("state", STATE_KEYS)


def state_path(config: Config, override: str | None = None) -> Path:
    if override:
        return Path(override)
    value = state_section(config).get("path", DEFAULT_STATE_PATH)
    if not isinstance(value, str) or not value:
        raise config.error("state", "state.path must be a file path")
    return config.resolve(value)


@dataclass
class RecordResult:
    """What one detect run changed: which alerts notify, which were suppressed or seen again."""

    new: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (alert, suppressed_by)
    seen_again: list[dict[str, Any]] = field(default_factory=list)
    # (alert, previous severity): a notifying alert re-detected more severe may reach more sinks
    escalated: list[tuple[dict[str, Any], str]] = field(default_factory=list)


@dataclass(frozen=True)
class Delivery:
    """One outbox row due for delivery, with the alert's current lifecycle."""

    alert_id: str
    sink: str
    action: str
    attempts: int
    alert: dict[str, Any]
    status: str
    by: str | None  # who acknowledged / resolved, for those actions
    note: str | None
    at: dt.datetime | None


class AlertStore:
    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        self.con = con
        self.path = path

    @classmethod
    def open(cls, path: str | Path, wait_seconds: float = LOCK_WAIT_SECONDS) -> AlertStore:
        """Open (creating if needed) the state database, waiting while another process holds it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                con = duckdb.connect(str(path))
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() >= deadline:
                    raise AlertStateError(f"{path}: cannot open the state database: {error}") from error
                time.sleep(_LOCK_POLL_SECONDS)
        con.execute(_SCHEMA)
        return cls(con, path)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- alerts -------------------------------------------------------------------------------------

    def record_alerts(
        self, alerts: Iterable[dict[str, Any]], suppression_minutes: dict[str, int], now: dt.datetime
    ) -> RecordResult:
        """Store one detect run's alerts; decide which are new notifications and which are suppressed.

        `suppression_minutes` maps detection_id -> the detection's suppression window.
        """
        now = _naive_utc(now)
        result = RecordResult()
        # Earliest first, so within one run the first alert of a key notifies and later ones are suppressed.
        ordered = sorted(alerts, key=lambda alert: (alert["window_start"], alert["alert_id"]))
        self.con.execute("begin transaction")
        try:
            for alert in ordered:
                self._record_one(alert, suppression_minutes[alert["detection_id"]], now, result)
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise
        return result

    def _record_one(
        self, alert: dict[str, Any], minutes: int, now: dt.datetime, result: RecordResult
    ) -> None:
        existing = self.con.execute(
            "select severity, suppressed_by from alerts where alert_id = ?", [alert["alert_id"]]
        ).fetchone()
        if existing:
            previous_severity, suppressed_by = existing
            severity = max(previous_severity, alert["severity"], key=severity_rank)
            self.con.execute(
                "update alerts set last_seen = ?, severity = ?, alert = ? where alert_id = ?",
                [now, severity, json.dumps(alert, sort_keys=True), alert["alert_id"]],
            )
            result.seen_again.append(alert)
            if suppressed_by is None and severity_rank(severity) > severity_rank(previous_severity):
                result.escalated.append((alert, previous_severity))
            return
        window_start = _parse_time(alert["window_start"])
        window = dt.timedelta(minutes=minutes)
        suppression = self.con.execute(
            "select alert_id, suppressed_until from suppressions where dedup_key = ?", [alert["dedup_key"]]
        ).fetchone()
        suppressed_by = None
        if suppression and suppression[1] - window <= window_start < suppression[1]:
            suppressed_by = suppression[0]
        self.con.execute(
            f"insert into alerts ({_ALERT_COLUMNS}) values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, null, null, null, null, null, null, ?)",
            [
                alert["alert_id"],
                alert["detection_id"],
                alert["dedup_key"],
                alert["severity"],
                alert["entity_type"],
                alert["entity_id"],
                window_start,
                now,
                now,
                suppressed_by,
                json.dumps(alert, sort_keys=True),
            ],
        )
        if suppressed_by:
            result.suppressed.append((alert, suppressed_by))
            return
        # A backfilled older alert must not shorten the window a newer one opened.
        if suppression is None or window_start + window > suppression[1]:
            self.con.execute(
                "insert or replace into suppressions values (?, ?, ?)",
                [alert["dedup_key"], alert["alert_id"], window_start + window],
            )
        result.new.append(alert)

    def resolve_id(self, alert_id: str) -> str:
        """Full alert_id from an id or a unique prefix of at least 6 characters (as `alerts list` shows)."""
        if len(alert_id) < 6:
            raise AlertStateError(f"alert id {alert_id!r} is too short: give at least 6 characters")
        matches = [
            row[0]
            for row in self.con.execute(
                "select alert_id from alerts where starts_with(alert_id, ?) order by alert_id limit 2",
                [alert_id],
            ).fetchall()
        ]
        if not matches:
            raise AlertStateError(f"no alert {alert_id!r} in {self.path}")
        if len(matches) > 1:
            raise AlertStateError(f"alert id prefix {alert_id!r} is ambiguous: give more characters")
        return matches[0]

    def get(self, alert_id: str) -> dict[str, Any]:
        full_id = self.resolve_id(alert_id)
        cursor = self.con.execute(f"select {_ALERT_COLUMNS} from alerts where alert_id = ?", [full_id])
        columns = [column[0] for column in cursor.description]
        row = dict(zip(columns, cursor.fetchone(), strict=True))
        row["alert"] = json.loads(row["alert"])
        row["deliveries"] = [
            dict(
                zip(
                    ("sink", "action", "attempts", "last_error", "delivered_at", "next_attempt_at"),
                    values,
                    strict=True,
                )
            )
            for values in self.con.execute(
                "select sink, action, attempts, last_error, delivered_at, next_attempt_at from outbox "
                "where alert_id = ? order by enqueued_at, sink, action",
                [full_id],
            ).fetchall()
        ]
        return row

    def list_alerts(
        self,
        status: str | None = None,
        min_severity: str | None = None,
        detection_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Alerts, most recent first; min_severity keeps that severity and the more urgent ones."""
        conditions, parameters = [], []
        if status:
            conditions.append("status = ?")
            parameters.append(status)
        if min_severity:
            conditions.append("list_contains(?, severity)")
            parameters.append(list(SEVERITIES[severity_rank(min_severity) :]))
        if detection_id:
            conditions.append("detection_id = ?")
            parameters.append(detection_id)
        where = f"where {' and '.join(conditions)}" if conditions else ""
        cursor = self.con.execute(
            f"select {_ALERT_COLUMNS} from alerts {where} order by window_start desc, alert_id"
            + (f" limit {int(limit)}" if limit else ""),
            parameters,
        )
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def _transition(
        self,
        alert_id: str,
        allowed_from: tuple[str, ...],
        target: str,
        by: str,
        note: str | None,
        now: dt.datetime,
    ) -> dict[str, Any]:
        if not by.strip():
            raise AlertStateError("--by must name who is acting")
        record = self.get(alert_id)
        if record["status"] not in allowed_from:
            raise AlertStateError(
                f"alert {record['alert_id']} is {record['status']}; cannot mark it {target}"
            )
        prefix = "ack" if target == "acknowledged" else "resolved"
        # Alerts it suppressed are the same incident: they follow it.
        self.con.execute(
            f"update alerts set status = ?, {prefix}_by = ?, {prefix}_note = ?, {prefix}_at = ? "
            "where (alert_id = ? or suppressed_by = ?) and list_contains(?, status)",
            [target, by, note, _naive_utc(now), record["alert_id"], record["alert_id"], list(allowed_from)],
        )
        return self.get(record["alert_id"])

    def acknowledge(self, alert_id: str, by: str, note: str | None, now: dt.datetime) -> dict[str, Any]:
        return self._transition(alert_id, ("open",), "acknowledged", by, note, now)

    def resolve(self, alert_id: str, by: str, note: str | None, now: dt.datetime) -> dict[str, Any]:
        return self._transition(alert_id, ("open", "acknowledged"), "resolved", by, note, now)

    # --- outbox -------------------------------------------------------------------------------------

    def enqueue(self, alert_id: str, sinks: Iterable[str], action: str, now: dt.datetime) -> None:
        now = _naive_utc(now)
        for sink in sinks:
            self.con.execute(
                "insert into outbox (alert_id, sink, action, enqueued_at, next_attempt_at) "
                "values (?, ?, ?, ?, ?) on conflict do nothing",
                [alert_id, sink, action, now, now],
            )

    def triggered_sinks(self, alert_id: str) -> list[str]:
        """Sinks the alert was (or is being) sent to: follow-up actions go to the same ones."""
        rows = self.con.execute(
            "select sink from outbox where alert_id = ? and action = 'trigger' order by sink", [alert_id]
        ).fetchall()
        return [row[0] for row in rows]

    def due_deliveries(self, now: dt.datetime, alert_ids: Iterable[str] | None = None) -> list[Delivery]:
        """Undelivered outbox rows whose next attempt is due, oldest first, trigger before its follow-ups."""
        parameters: list[Any] = [_naive_utc(now)]
        only = ""
        if alert_ids is not None:
            only = "and list_contains(?, o.alert_id)"
            parameters.append(list(alert_ids))
        rows = self.con.execute(
            "select o.alert_id, o.sink, o.action, o.attempts, a.alert, a.status, "
            "  case o.action when 'acknowledge' then a.ack_by when 'resolve' then a.resolved_by end, "
            "  case o.action when 'acknowledge' then a.ack_note when 'resolve' then a.resolved_note end, "
            "  case o.action when 'acknowledge' then a.ack_at when 'resolve' then a.resolved_at end "
            "from outbox o join alerts a using (alert_id) "
            f"where o.delivered_at is null and o.next_attempt_at <= ? {only} "
            "order by o.enqueued_at, o.alert_id, "
            "  case o.action when 'trigger' then 0 when 'acknowledge' then 1 else 2 end, o.sink",
            parameters,
        ).fetchall()
        return [
            Delivery(alert_id, sink, action, attempts, json.loads(alert), status, by, note, at)
            for alert_id, sink, action, attempts, alert, status, by, note, at in rows
        ]

    def mark_delivered(self, delivery: Delivery, attempts: int, now: dt.datetime) -> None:
        self.con.execute(
            "update outbox set attempts = ?, delivered_at = ?, last_error = null "
            "where alert_id = ? and sink = ? and action = ?",
            [attempts, _naive_utc(now), delivery.alert_id, delivery.sink, delivery.action],
        )

    def mark_failed(
        self, delivery: Delivery, attempts: int, error: str, next_attempt_at: dt.datetime
    ) -> None:
        self.con.execute(
            "update outbox set attempts = ?, last_error = ?, next_attempt_at = ? "
            "where alert_id = ? and sink = ? and action = ?",
            [attempts, error, _naive_utc(next_attempt_at), delivery.alert_id, delivery.sink, delivery.action],
        )

    def pending_deliveries(self) -> int:
        return self.con.execute("select count(*) from outbox where delivered_at is null").fetchone()[0]

    # --- lake progress (detect --every) ------------------------------------------------------------

    def processed_files(self) -> dict[str, int]:
        return dict(self.con.execute("select path, size from lake_files").fetchall())

    def completed_partitions(self) -> set[str]:
        return {row[0] for row in self.con.execute("select partition_dir from lake_partitions").fetchall()}

    def mark_processed(
        self, files: dict[str, int], completed_partitions: Iterable[str], now: dt.datetime
    ) -> None:
        now = _naive_utc(now)
        for path, size in files.items():
            self.con.execute("insert or replace into lake_files values (?, ?, ?)", [path, size, now])
        for partition in completed_partitions:
            self.con.execute("insert or replace into lake_partitions values (?, ?)", [partition, now])


# --- command line ---------------------------------------------------------------------------------


def _short(alert_id: str | None) -> str:
    return alert_id[:12] if alert_id else "-"


def _print_record(record: dict[str, Any]) -> None:
    alert = record["alert"]
    print(headline(alert))

    def action_text(at_key: str, by_key: str, note_key: str) -> str | None:
        if record[at_key] is None:
            return None
        return f"{record[at_key]} by {record[by_key]}" + (f": {record[note_key]}" if record[note_key] else "")

    lifecycle = [
        ("alert_id", record["alert_id"]),
        ("status", record["status"]),
        ("severity", record["severity"]),
        ("dedup_key", record["dedup_key"]),
        ("first_seen", record["first_seen"]),
        ("last_seen", record["last_seen"]),
        ("suppressed_by", record["suppressed_by"]),
        ("acknowledged", action_text("ack_at", "ack_by", "ack_note")),
        ("resolved", action_text("resolved_at", "resolved_by", "resolved_note")),
    ]
    for name, value in lifecycle:
        if value is not None:
            print(f"{name:>14}: {value}")
    for delivery in record["deliveries"]:
        state = (
            f"delivered {delivery['delivered_at']}"
            if delivery["delivered_at"]
            else (
                f"pending, next attempt {delivery['next_attempt_at']}, last error: {delivery['last_error']}"
            )
        )
        print(
            f"{'delivery':>14}: {delivery['action']} -> {delivery['sink']}: {state} "
            f"({delivery['attempts']} attempt(s))"
        )
    print(json.dumps(alert, indent=2, sort_keys=True))


def _run(args: argparse.Namespace, action) -> int:
    try:
        config = load_config(args.config)
        with AlertStore.open(state_path(config, args.state)) as store:
            return action(config, store)
    except (ConfigError, AlertStateError, routing.RoutingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def run_list_command(args: argparse.Namespace) -> int:
    def action(config: Config, store: AlertStore) -> int:
        records = store.list_alerts(args.status, args.severity, args.detection, args.limit)
        rows = [
            (
                _short(r["alert_id"]),
                r["status"],
                r["severity"],
                r["detection_id"],
                r["entity_id"],
                len(json.loads(r["alert"])["account_ids"]),
                r["window_start"],
                _short(r["suppressed_by"]),
            )
            for r in records
        ]
        columns = [
            "alert_id",
            "status",
            "severity",
            "detection",
            "entity",
            "accounts",
            "window_start",
            "suppressed_by",
        ]
        print(format_table(columns, rows))
        return 0

    return _run(args, action)


def run_show_command(args: argparse.Namespace) -> int:
    def action(config: Config, store: AlertStore) -> int:
        _print_record(store.get(args.alert_id))
        return 0

    return _run(args, action)


def _change_status(args: argparse.Namespace, kind: str) -> int:
    """ack / resolve: update state, write the audit record, route the follow-up to the same sinks."""

    def action(config: Config, store: AlertStore) -> int:
        router = routing.load_router(config)  # fails fast on a missing secret before anything changes
        now = dt.datetime.now(dt.UTC)
        if kind == "acknowledge":
            record = store.acknowledge(args.alert_id, args.by, args.note, now)
        else:
            record = store.resolve(args.alert_id, args.by, args.note, now)
        audit.open_audit_log(config, args.state).append(
            "ack" if kind == "acknowledge" else "resolve",
            {
                "alert_id": record["alert_id"],
                "dedup_key": record["dedup_key"],
                "by": args.by,
                "note": args.note,
            },
            now,
        )
        sinks = router.follow_up_sinks(store.triggered_sinks(record["alert_id"]), kind)
        store.enqueue(record["alert_id"], sinks, kind, now)
        report = router.deliver(store, now, alert_ids=[record["alert_id"]])
        print(f"{record['alert_id']} {record['status']} by {args.by}; {report.describe()}")
        return 0

    return _run(args, action)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("alerts", help="list, show, acknowledge and resolve alerts")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="alerts_command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", help="usagewatch.yml (default: repo root, or $USAGEWATCH_CONFIG)")
        sub.add_argument("--state", help="state database (default: state.path of the configuration)")

    listing = actions.add_parser("list", help="alerts, most recent window first")
    common(listing)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--severity", choices=SEVERITIES, help="this severity and more urgent ones")
    listing.add_argument("--detection", help="only this detection's alerts")
    listing.add_argument("--limit", type=int, help="at most this many rows")
    listing.set_defaults(func=run_list_command)

    show = actions.add_parser("show", help="one alert with its lifecycle, deliveries and full JSON")
    common(show)
    show.add_argument("alert_id", help="alert id, or a unique prefix of at least 6 characters")
    show.set_defaults(func=run_show_command)

    for name, kind, text in (
        ("ack", "acknowledge", "acknowledge an open alert (routed, e.g. PagerDuty acknowledge; audited)"),
        ("resolve", "resolve", "resolve an alert (routed, e.g. PagerDuty resolve; audited)"),
    ):
        sub = actions.add_parser(name, help=text)
        common(sub)
        sub.add_argument("alert_id", help="alert id, or a unique prefix of at least 6 characters")
        sub.add_argument("--by", required=True, help="who is acting (recorded and audited)")
        sub.add_argument("--note", help="free text kept with the alert")
        sub.set_defaults(func=lambda args, kind=kind: _change_status(args, kind))
