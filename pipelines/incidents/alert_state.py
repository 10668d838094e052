"""The state database (one DuckDB file): signals, incidents, the delivery outbox, lake progress.

Tables:
- signals: one row per signal (a detection's alert document, schemas/alert.schema.json) ever raised,
  with its lifecycle, which follows its incident's: open -> acknowledged -> resolved. A signal raised
  while another with the same dedup_key is within its suppression window is kept but marks
  `suppressed_by` the signal that came first. Signals are never routed; incidents are.
- suppressions: per dedup_key, the signal that came first and the event time until which later signals
  of that key are duplicates (window_start + the detection's suppression_minutes). Event time, so a
  replay of history suppresses exactly as the live run would have.
- detection_risk: per detection, how much it may add to one incident and whether its signals link
  accounts, as the producer (detections, data quality) last declared it: correlation reads the window's
  signals of every producer, so the caps live with them.
- incidents / incident_members: one row per incident (the incident document of
  schemas/incident.schema.json and its lifecycle), and which accounts and entities belong to which open
  or acknowledged incident: a later signal touching a member updates that incident instead of opening one.
- outbox: one row per (incident change, sink), carrying the routed copy; delivered_at stays null until
  the sink accepted it, so an unreachable sink gets it on a later run.
- audit_cursor: the last audit record whose change the state holds, moved in the transaction that
  applies it (pipelines/incidents/audit_state.py: write-ahead records, reconciliation on start).
- lake_files / lake_partitions: which committed lake files `detect --every` has already seen, and which
  partitions are complete (Flink's _SUCCESS marker) so they are not listed again.

DuckDB lets one process hold the file at a time; every command opens it briefly and waits (bounded)
for another holder to finish, so `incidents ack` works while `detect --every` is running. Writes come
in batches (one statement per table per run over an Arrow table), never one statement per signal.

`usagewatch signals list|show` (alias `alerts`, deprecated) and `usagewatch incidents`
(pipelines/commands/incidents.py) read it. At ~900 lines this module is one thing, the store: its schema
and migrations and the AlertStore's reads and batch writes over those tables, kept together so each
table's invariants live next to every statement that writes it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.incidents.alerts import SEVERITIES
from pipelines.infra.clock import naive_utc
from pipelines.infra.config import Config

DEFAULT_STATE_PATH = ".run/state/state.duckdb"  # relative to the configuration file
STATE_KEYS = {"path", "audit_log"}
STATUSES = ("open", "acknowledged", "resolved")
LOCK_WAIT_SECONDS = 30.0
_LOCK_POLL_SECONDS = 0.2
_STATUS_CHECK = "check (status in ({}))".format(", ".join(f"'{status}'" for status in STATUSES))

# Who acknowledged or resolved, when and why: signals and incidents carry the same lifecycle.
_LIFECYCLE_COLUMNS = (
    "ack_by varchar, ack_note varchar, ack_at timestamp, "
    "resolved_by varchar, resolved_note varchar, resolved_at timestamp,"
)

_SCHEMA = f"""
create table if not exists signals (
    alert_id varchar primary key,
    detection_id varchar not null,
    dedup_key varchar not null,
    severity varchar not null,
    entity_type varchar not null,
    entity_id varchar not null,
    window_start timestamp not null,
    window_end timestamp not null,
    first_seen timestamp not null,   -- processing time of the first detect run that raised it
    last_seen timestamp not null,    -- processing time of the latest detect run that found it again
    status varchar not null {_STATUS_CHECK},
    suppressed_by varchar,
    incident_id varchar,
    {_LIFECYCLE_COLUMNS}
    alert json not null
);
create table if not exists suppressions (
    dedup_key varchar primary key,
    alert_id varchar not null,
    suppressed_until timestamp not null
);
create table if not exists detection_risk (
    detection_id varchar primary key,
    max_contribution integer not null,
    links_accounts boolean not null
);
create table if not exists incidents (
    incident_id varchar primary key,
    status varchar not null {_STATUS_CHECK},
    severity varchar not null,
    risk_score integer not null,
    title varchar not null,
    account_count integer not null,
    first_seen timestamp not null,   -- event time of its earliest signal
    last_seen timestamp not null,    -- event time of its latest signal
    created_at timestamp not null,
    updated_at timestamp not null,
    merged_into varchar,
    {_LIFECYCLE_COLUMNS}
    incident json not null
);
create table if not exists incident_members (
    member varchar not null,         -- 'account:<id>' or '<entity type>:<id>'
    incident_id varchar not null,
    primary key (member, incident_id)
);
create sequence if not exists outbox_seq;
create table if not exists outbox (
    outbox_id bigint primary key default nextval('outbox_seq'),
    incident_id varchar not null,
    sink varchar not null,
    change varchar not null,
    action varchar not null,         -- trigger | acknowledge | resolve
    document json not null,          -- the routed copy: the incident document with `change`
    enqueued_at timestamp not null,
    attempts integer not null default 0,
    next_attempt_at timestamp not null,
    last_error varchar,
    delivered_at timestamp
);
create table if not exists lake_files (
    path varchar primary key,
    size bigint not null,
    processed_at timestamp not null
);
-- Where the state has applied the audit log up to (one row): the record (seq, hash) and the byte
-- offset just after it. Moved in the same transaction as the state change a record describes, so the
-- records after it are exactly those whose change the state does not hold yet (write-ahead).
create table if not exists audit_cursor (
    seq bigint not null,
    hash varchar not null,
    end_offset bigint not null
);
create table if not exists lake_partitions (
    partition_dir varchar primary key,
    completed_at timestamp not null
);
"""

# A state database written before signals and incidents: its alerts become signals; its alert outbox
# is kept aside (alerts are no longer routed on their own) rather than dropped.
_MIGRATIONS = (
    (
        "alerts",
        "alter table alerts rename to signals; "
        "alter table signals add column window_end timestamp; "
        "update signals set window_end = cast(alert->>'window_end' as timestamptz) at time zone 'UTC'; "
        "alter table signals add column incident_id varchar",
    ),
    ("outbox", "alter table outbox rename to legacy_alert_outbox"),
)

_SIGNAL_COLUMNS = (
    "alert_id, detection_id, dedup_key, severity, entity_type, entity_id, window_start, window_end, "
    "first_seen, last_seen, status, suppressed_by, incident_id, ack_by, ack_note, ack_at, resolved_by, "
    "resolved_note, resolved_at, alert"
)
_INCIDENT_COLUMNS = (
    "incident_id, status, severity, risk_score, title, account_count, first_seen, last_seen, created_at, "
    "updated_at, merged_into, ack_by, ack_note, ack_at, resolved_by, resolved_note, resolved_at, incident"
)


class AlertStateError(ValueError):
    """An unknown signal or incident, an invalid transition, or a state database that cannot be opened."""


def parse_time(text: str) -> dt.datetime:
    return naive_utc(dt.datetime.fromisoformat(text))


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def state_section(config: Config) -> dict[str, Any]:
    return config.section("state", STATE_KEYS)


def state_path(config: Config, override: str | Path | None = None) -> Path:
    if override:
        return Path(override)
    value = state_section(config).get("path", DEFAULT_STATE_PATH)
    if not isinstance(value, str) or not value:
        raise config.error("state", "state.path must be a file path")
    return config.resolve(value)


@dataclass
class RecordResult:
    """What recording one run's signals changes: which are new, which duplicates, which seen again."""

    new: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (signal, suppressed_by)
    seen_again: list[dict[str, Any]] = field(default_factory=list)
    # dedup_key -> (first signal, suppressed until): the suppression rows this run writes
    suppressions: dict[str, tuple[str, dt.datetime]] = field(default_factory=dict)
    # alert_id -> severity kept for a signal seen again (never lowered)
    severities: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """One outbox row due for delivery: the routed copy of an incident change for one sink."""

    outbox_id: int
    incident_id: str
    sink: str
    change: str
    action: str
    attempts: int
    incident: dict[str, Any]  # the incident document with `change`

    @property
    def by(self) -> str | None:
        """Who acknowledged / resolved, for those changes."""
        return (self._lifecycle() or {}).get("by")

    @property
    def note(self) -> str | None:
        return (self._lifecycle() or {}).get("note")

    def _lifecycle(self) -> dict[str, Any] | None:
        return self.incident.get(
            {"acknowledged": "acknowledged", "resolved": "resolved"}.get(self.change, "")
        )


@dataclass(frozen=True)
class AuditCursor:
    """The last audit record whose state change the state holds (see the audit_cursor table)."""

    seq: int
    hash: str
    end_offset: int


@dataclass(frozen=True)
class OutboxRow:
    incident_id: str
    sink: str
    change: str
    action: str
    document: dict[str, Any]


@dataclass
class IncidentChanges:
    """What one run's incident records write: each document as it now stands, the members and newly held
    signals of the incidents still open, and the outbox rows that route the changes."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    members: dict[str, set[str]] = field(default_factory=dict)
    signal_ids: dict[str, set[str]] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)


def _arrow(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


_ARROW_TYPES = {"text": pa.string(), "int": pa.int64(), "time": pa.timestamp("us")}


def _schema(columns: str) -> pa.Schema:
    """The Arrow schema of a batch written into a state table, from its columns in order: `name` is text
    (varchar or json), `name:int` a bigint, `name:time` a timestamp."""
    return pa.schema(
        [
            (name, _ARROW_TYPES[kind or "text"])
            for name, _, kind in (c.partition(":") for c in columns.split())
        ]
    )


_SIGNAL_ARROW = _schema(
    "alert_id detection_id dedup_key severity entity_type entity_id window_start:time window_end:time "
    "suppressed_by alert"
)


def _status_filter(status: str | None, min_severity: str | None) -> tuple[list[str], list[Any]]:
    """(conditions, parameters) keeping rows of that status and of min_severity or more urgent."""
    conditions: list[str] = []
    parameters: list[Any] = []
    if status:
        conditions.append("status = ?")
        parameters.append(status)
    if min_severity:
        conditions.append("list_contains(?, severity)")
        parameters.append(list(SEVERITIES[severity_rank(min_severity) :]))
    return conditions, parameters


def _signal_tables(result: RecordResult) -> dict[str, pa.Table]:
    """record_run's signal batches: `fresh` (new and suppressed), `refreshed` (seen again: the latest
    document and the severity kept), `suppression_rows` (the windows they open)."""
    inserted = [(signal, None) for signal in result.new] + result.suppressed
    rows = [
        {
            **{key: signal[key] for key in ("alert_id", "detection_id", "dedup_key", "severity")},
            "entity_type": signal["entity_type"],
            "entity_id": signal["entity_id"],
            "window_start": parse_time(signal["window_start"]),
            "window_end": parse_time(signal["window_end"]),
            "suppressed_by": suppressed_by,
            "alert": json.dumps(signal, sort_keys=True),
        }
        for signal, suppressed_by in inserted
    ]
    again = [
        {
            **{key: None for key in _SIGNAL_ARROW.names},
            "alert_id": signal["alert_id"],
            "severity": result.severities[signal["alert_id"]],
            "alert": json.dumps(signal, sort_keys=True),
        }
        for signal in result.seen_again
    ]
    suppression_rows = pa.Table.from_pylist(
        [
            {"dedup_key": key, "alert_id": alert_id, "suppressed_until": until}
            for key, (alert_id, until) in result.suppressions.items()
        ],
        schema=_schema("dedup_key alert_id suppressed_until:time"),
    )
    return {
        "fresh": _arrow(rows, _SIGNAL_ARROW),
        "refreshed": _arrow(again, _SIGNAL_ARROW),
        "suppression_rows": suppression_rows,
    }


def _incident_tables(incidents: IncidentChanges) -> dict[str, pa.Table]:
    """record_run's incident batches: `changed` (incident rows), `member_rows`, `links` (signal ->
    incident), `outbox_rows`."""
    incident_rows = [
        {
            "incident_id": doc["incident_id"],
            "status": doc["status"],
            "severity": doc["severity"],
            "risk_score": doc["risk_score"],
            "title": doc["title"],
            "account_count": len(doc["account_ids"]),
            "first_seen": parse_time(doc["first_seen"]),
            "last_seen": parse_time(doc["last_seen"]),
            "created_at": parse_time(doc["created_at"]),
            "updated_at": parse_time(doc["updated_at"]),
            "merged_into": doc.get("merged_into"),
            "resolved_by": (doc.get("resolved") or {}).get("by"),
            "resolved_note": (doc.get("resolved") or {}).get("note"),
            "resolved_at": parse_time(doc["resolved"]["at"]) if doc.get("resolved") else None,
            "incident": json.dumps(doc, sort_keys=True),
        }
        for doc in incidents.documents
    ]
    return {
        "changed": pa.Table.from_pylist(
            incident_rows,
            schema=_schema(
                "incident_id status severity risk_score:int title account_count:int first_seen:time "
                "last_seen:time created_at:time updated_at:time merged_into resolved_by resolved_note "
                "resolved_at:time incident"
            ),
        ),
        "member_rows": pa.Table.from_pylist(
            [
                {"member": member, "incident_id": incident_id}
                for incident_id, members in incidents.members.items()
                for member in sorted(members)
            ],
            schema=_schema("member incident_id"),
        ),
        "links": pa.Table.from_pylist(
            [
                {"alert_id": alert_id, "incident_id": incident_id}
                for incident_id, alert_ids in incidents.signal_ids.items()
                for alert_id in sorted(alert_ids)
            ],
            schema=_schema("alert_id incident_id"),
        ),
        "outbox_rows": pa.Table.from_pylist(
            [
                {
                    "incident_id": row.incident_id,
                    "sink": row.sink,
                    "change": row.change,
                    "action": row.action,
                    "document": json.dumps(row.document, sort_keys=True),
                }
                for row in incidents.outbox
            ],
            schema=_schema("incident_id sink change action document"),
        ),
    }


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
        tables = {
            row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()
        }
        outbox_columns = {
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns where table_name = 'outbox'"
            ).fetchall()
        }
        for table, migration in _MIGRATIONS:
            legacy = table == "alerts" or "alert_id" in outbox_columns
            if table in tables and legacy:
                con.execute(migration)
        con.execute(_SCHEMA)
        return cls(con, path)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _transaction(self, work, tables: dict[str, pa.Table] | None = None) -> None:
        """Run `work` in one transaction, with `tables` (Arrow) readable by name in its SQL."""
        for name, table in (tables or {}).items():
            self.con.register(name, table)
        self.con.execute("begin transaction")
        try:
            work()
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise
        finally:
            for name in tables or {}:
                self.con.unregister(name)

    # --- the audit cursor ---------------------------------------------------------------------------

    def audit_cursor(self) -> AuditCursor | None:
        rows = self.con.execute("select seq, hash, end_offset from audit_cursor").fetchall()
        return AuditCursor(*rows[0]) if rows else None

    def _advance(self, cursor: AuditCursor | None) -> None:
        """Inside a transaction: the state now holds every change up to `cursor`."""
        if cursor is not None:
            self.con.execute("delete from audit_cursor")
            self.con.execute(
                "insert into audit_cursor values (?, ?, ?)", [cursor.seq, cursor.hash, cursor.end_offset]
            )

    def set_audit_cursor(self, cursor: AuditCursor) -> None:
        self._transaction(lambda: self._advance(cursor))

    # --- signals ------------------------------------------------------------------------------------

    def plan_signals(
        self, signals: Iterable[dict[str, Any]], suppression_minutes: dict[str, int]
    ) -> RecordResult:
        """Decide, reading only, which signals are new, duplicates (suppressed) or seen again.

        Nothing is written, so the caller can audit what it is about to record first (write-ahead).
        `suppression_minutes` maps detection_id -> the detection's suppression window.
        """
        result = RecordResult()
        # Earliest first, so within one run the first signal of a key counts and later ones are duplicates.
        ordered = sorted(signals, key=lambda signal: (signal["window_start"], signal["alert_id"]))
        if not ordered:
            return result
        known = {
            alert_id: severity
            for alert_id, severity in self.con.execute(
                "select alert_id, severity from signals where list_contains(?, alert_id)",
                [[signal["alert_id"] for signal in ordered]],
            ).fetchall()
        }
        suppressions = {
            key: (alert_id, until)
            for key, alert_id, until in self.con.execute(
                "select dedup_key, alert_id, suppressed_until from suppressions "
                "where list_contains(?, dedup_key)",
                [sorted({signal["dedup_key"] for signal in ordered})],
            ).fetchall()
        }
        for signal in ordered:
            if signal["alert_id"] in known:
                previous = known[signal["alert_id"]]
                result.severities[signal["alert_id"]] = max(previous, signal["severity"], key=severity_rank)
                result.seen_again.append(signal)
                continue
            window_start = parse_time(signal["window_start"])
            window = dt.timedelta(minutes=suppression_minutes[signal["detection_id"]])
            suppression = suppressions.get(signal["dedup_key"])
            known[signal["alert_id"]] = signal["severity"]  # the same id twice in one run is seen again
            if suppression and suppression[1] - window <= window_start < suppression[1]:
                result.suppressed.append((signal, suppression[0]))
                continue
            # A backfilled older signal must not shorten the window a newer one opened.
            if suppression is None or window_start + window > suppression[1]:
                suppressions[signal["dedup_key"]] = (signal["alert_id"], window_start + window)
                result.suppressions[signal["dedup_key"]] = suppressions[signal["dedup_key"]]
            result.new.append(signal)
        return result

    def record_run(
        self,
        signals: RecordResult,
        incidents: IncidentChanges,
        now: dt.datetime,
        cursor: AuditCursor | None = None,
        risk: dict[str, tuple[int, bool]] | None = None,
    ) -> None:
        """Write one run's decisions in one transaction and a few batched statements: the signals
        plan_signals decided, the detections' risk policies as their producer declares them now
        (detection_id -> (max_contribution, links_accounts)), the incident changes with the outbox rows
        that route them, and the audit cursor moved to `cursor`. Signals go first, so an incident change
        links the signals recorded with it."""
        now = naive_utc(now)

        def work() -> None:
            self._write_signals(now)
            if risk:
                self.con.executemany(
                    "insert or replace into detection_risk values (?, ?, ?)",
                    [[detection_id, cap, links] for detection_id, (cap, links) in risk.items()],
                )
            if incidents.documents:
                self._write_incidents(incidents, now)
            self._advance(cursor)

        self._transaction(work, _signal_tables(signals) | _incident_tables(incidents))

    def _write_signals(self, now: dt.datetime) -> None:
        """Inside record_run: the new and suppressed signals, those seen again, the suppression windows."""
        self.con.execute(
            f"insert into signals ({_SIGNAL_COLUMNS}) "
            "select alert_id, detection_id, dedup_key, severity, "
            "entity_type, entity_id, window_start, window_end, $now, $now, 'open', suppressed_by, null, "
            "null, null, null, null, null, null, alert from fresh",
            {"now": now},
        )
        self.con.execute(
            "update signals set last_seen = $now, severity = refreshed.severity, alert = refreshed.alert "
            "from refreshed where signals.alert_id = refreshed.alert_id",
            {"now": now},
        )
        self.con.execute("insert or replace into suppressions select * from suppression_rows")

    def record_alerts(
        self, signals: Iterable[dict[str, Any]], suppression_minutes: dict[str, int], now: dt.datetime
    ) -> RecordResult:
        """plan_signals + record_run, for callers that audit nothing (tests, fixtures)."""
        result = self.plan_signals(signals, suppression_minutes)
        self.record_run(result, IncidentChanges(), now)
        return result

    def risk_policies(self) -> dict[str, tuple[int, bool]]:
        rows = self.con.execute("select detection_id, max_contribution, links_accounts from detection_risk")
        return {detection_id: (cap, links) for detection_id, cap, links in rows.fetchall()}

    def window_signals(self, window: dt.timedelta, pending: RecordResult) -> list[dict[str, Any]]:
        """Unresolved signals whose window ends within `window` of the newest one's end (event time), as
        they stand once `pending` (what plan_signals decided, not written yet) is recorded: its new and
        suppressed signals are open and in no incident, a signal seen again carries its latest document.

        Each is the signal document plus `incident_id` (the incident it already belongs to, or None):
        the stored ones in table order, then the pending ones in the order record_run inserts them.
        """
        fresh = pending.new + [signal for signal, _ in pending.suppressed]
        latest = {signal["alert_id"]: signal for signal in pending.seen_again}
        ((stored_newest,),) = self.con.execute(
            "select max(window_end) from signals where status <> 'resolved'"
        ).fetchall()
        ends = [parse_time(signal["window_end"]) for signal in fresh]
        ends += [stored_newest] if stored_newest is not None else []
        if not ends:
            return []
        cutoff = max(ends) - window
        rows = self.con.execute(
            "select alert_id, alert, incident_id from signals where status <> 'resolved' and window_end >= ?",
            [cutoff],
        ).fetchall()
        stored = [
            {**(latest[alert_id] if alert_id in latest else json.loads(alert)), "incident_id": incident_id}
            for alert_id, alert, incident_id in rows
        ]
        return stored + [
            {**latest.get(signal["alert_id"], signal), "incident_id": None}
            for signal in fresh
            if parse_time(signal["window_end"]) >= cutoff
        ]

    def resolve_id(self, alert_id: str, table: str = "signals", column: str = "alert_id") -> str:
        """Full id from an id or a unique prefix of at least 6 characters (as the lists show)."""
        noun = "signal" if table == "signals" else "incident"
        if len(alert_id) < 6:
            raise AlertStateError(f"{noun} id {alert_id!r} is too short: give at least 6 characters")
        matches = [
            row[0]
            for row in self.con.execute(
                f"select {column} from {table} where starts_with({column}, ?) order by {column} limit 2",
                [alert_id],
            ).fetchall()
        ]
        if not matches:
            raise AlertStateError(f"no {noun} {alert_id!r} in {self.path}")
        if len(matches) > 1:
            raise AlertStateError(f"{noun} id prefix {alert_id!r} is ambiguous: give more characters")
        return matches[0]

    def _rows(self, sql: str, parameters: list[Any]) -> list[dict[str, Any]]:
        """The rows `sql` selects, each a dict by column name."""
        cursor = self.con.execute(sql, parameters)
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def _listing(
        self, select: str, conditions: list[str], parameters: list[Any], order: str, limit: int | None
    ) -> list[dict[str, Any]]:
        """`select` filtered by all `conditions`, in `order`, at most `limit` rows (all when None)."""
        where = f"where {' and '.join(conditions)}" if conditions else ""
        return self._rows(
            f"{select} {where} order by {order}" + (f" limit {int(limit)}" if limit else ""), parameters
        )

    def get(self, alert_id: str) -> dict[str, Any]:
        full_id = self.resolve_id(alert_id)
        (row,) = self._rows(f"select {_SIGNAL_COLUMNS} from signals where alert_id = ?", [full_id])
        row["alert"] = json.loads(row["alert"])
        return row

    def list_alerts(
        self,
        status: str | None = None,
        min_severity: str | None = None,
        detection_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Signals, most recent first; min_severity keeps that severity and the more urgent ones."""
        conditions, parameters = _status_filter(status, min_severity)
        if detection_id:
            conditions.append("detection_id = ?")
            parameters.append(detection_id)
        return self._listing(
            f"select {_SIGNAL_COLUMNS} from signals",
            conditions,
            parameters,
            "window_start desc, alert_id",
            limit,
        )

    # --- incidents ----------------------------------------------------------------------------------

    def incidents_touching(self, members: Iterable[str]) -> dict[str, str]:
        """member -> the open or acknowledged incident it belongs to."""
        rows = self.con.execute(
            "select m.member, m.incident_id from incident_members m join incidents i using (incident_id) "
            "where i.status <> 'resolved' and list_contains(?, m.member)",
            [sorted(set(members))],
        ).fetchall()
        return dict(rows)

    def incident_records(self, incident_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """incident_id -> its row (the document parsed under 'incident'), for the ids that exist."""
        rows = self._rows(
            f"select {_INCIDENT_COLUMNS} from incidents where list_contains(?, incident_id)",
            [sorted(set(incident_ids))],
        )
        records = {}
        for row in rows:
            row["incident"] = json.loads(row["incident"])
            records[row["incident_id"]] = row
        return records

    def _by_incident(self, table: str, column: str, incident_ids: Iterable[str]) -> dict[str, set[str]]:
        """incident_id -> the `column` values of `table`'s rows in that incident, for the given ids."""
        grouped: dict[str, set[str]] = {}
        for incident_id, value in self.con.execute(
            f"select incident_id, {column} from {table} where list_contains(?, incident_id)",
            [sorted(set(incident_ids))],
        ).fetchall():
            grouped.setdefault(incident_id, set()).add(value)
        return grouped

    def incident_member_sets(self, incident_ids: Iterable[str]) -> dict[str, set[str]]:
        return self._by_incident("incident_members", "member", incident_ids)

    def known_incident_ids(self, incident_ids: Iterable[str]) -> set[str]:
        rows = self.con.execute(
            "select incident_id from incidents where list_contains(?, incident_id)",
            [sorted(set(incident_ids))],
        ).fetchall()
        return {row[0] for row in rows}

    def incident_signal_ids(self, incident_ids: Iterable[str]) -> dict[str, set[str]]:
        return self._by_incident("signals", "alert_id", incident_ids)

    def incident_signals(self, incident_id: str) -> list[dict[str, Any]]:
        """The signal documents of one incident (its page shows them all)."""
        rows = self.con.execute("select alert from signals where incident_id = ?", [incident_id]).fetchall()
        return [json.loads(alert) for (alert,) in rows]

    def _write_incidents(self, incidents: IncidentChanges, now: dt.datetime) -> None:
        """Inside record_run: incidents (their documents as they now stand), membership, signal links and
        the outbox rows that route their changes."""
        # ack columns are kept from the stored row: only `incidents ack` sets them.
        self.con.execute(
            "insert or replace into incidents "
            "select c.incident_id, c.status, c.severity, c.risk_score, c.title, c.account_count, "
            "c.first_seen, c.last_seen, c.created_at, c.updated_at, c.merged_into, i.ack_by, i.ack_note, "
            "i.ack_at, coalesce(c.resolved_by, i.resolved_by), "
            "coalesce(c.resolved_note, i.resolved_note), "
            "coalesce(c.resolved_at, i.resolved_at), c.incident "
            "from changed c left join incidents i using (incident_id)"
        )
        self.con.execute(
            "delete from incident_members where list_contains(?, incident_id)",
            [[document["incident_id"] for document in incidents.documents]],
        )
        self.con.execute("insert into incident_members select distinct member, incident_id from member_rows")
        self.con.execute(
            "update signals set incident_id = links.incident_id from links "
            "where signals.alert_id = links.alert_id"
        )
        # Signals of a resolved (or merged-away) incident are resolved with it.
        self.con.execute(
            "update signals set status = 'resolved', resolved_by = c.resolved_by, "
            "resolved_note = c.resolved_note, resolved_at = c.resolved_at "
            "from changed c where signals.incident_id = c.incident_id and c.status = 'resolved' "
            "and signals.status <> 'resolved'"
        )
        self.con.execute(
            "insert into outbox "
            "(incident_id, sink, change, action, document, enqueued_at, next_attempt_at) "
            "select incident_id, sink, change, action, document, $now, $now from outbox_rows",
            {"now": now},
        )

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        full_id = self.resolve_id(incident_id, "incidents", "incident_id")
        record = self.incident_records([full_id])[full_id]
        record["deliveries"] = [
            dict(
                zip(
                    ("sink", "change", "attempts", "last_error", "delivered_at", "next_attempt_at"),
                    values,
                    strict=True,
                )
            )
            for values in self.con.execute(
                "select sink, change, attempts, last_error, delivered_at, next_attempt_at from outbox "
                "where incident_id = ? order by outbox_id",
                [full_id],
            ).fetchall()
        ]
        return record

    def list_incidents(
        self, status: str | None = None, min_severity: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Incidents, most recently updated first; merged ones only when asking for resolved ones."""
        conditions, parameters = _status_filter(status, min_severity)
        records = self._listing(
            f"select {_INCIDENT_COLUMNS} from incidents",
            conditions,
            parameters,
            "updated_at desc, incident_id",
            limit,
        )
        for record in records:
            record["incident"] = json.loads(record["incident"])
        return records

    def transition_incident(
        self,
        incident_id: str,
        allowed_from: tuple[str, ...],
        target: str,
        by: str,
        note: str | None,
        now: dt.datetime,
        document: dict[str, Any],
        outbox: list[OutboxRow],
        cursor: AuditCursor | None = None,
    ) -> None:
        """Set an incident's status (its document already updated by the caller) and every signal in it,
        queue the routed change and move the audit cursor, in one transaction."""
        now = naive_utc(now)
        prefix = "ack" if target == "acknowledged" else "resolved"

        def work() -> None:
            updated = self.con.execute(
                f"update incidents set status = ?, {prefix}_by = ?, {prefix}_note = ?, {prefix}_at = ?, "
                "updated_at = ?, incident = ? where incident_id = ? and list_contains(?, status) "
                "returning incident_id",
                [
                    target,
                    by,
                    note,
                    now,
                    now,
                    json.dumps(document, sort_keys=True),
                    incident_id,
                    list(allowed_from),
                ],
            ).fetchall()
            if not updated:
                raise AlertStateError(f"incident {incident_id} changed meanwhile; cannot mark it {target}")
            self.con.execute(
                f"update signals set status = ?, {prefix}_by = ?, {prefix}_note = ?, {prefix}_at = ? "
                "where incident_id = ? and list_contains(?, status)",
                [target, by, note, now, incident_id, list(allowed_from)],
            )
            for row in outbox:
                self.con.execute(
                    "insert into outbox (incident_id, sink, change, action, document, enqueued_at, "
                    "next_attempt_at) values (?, ?, ?, ?, ?, ?, ?)",
                    [
                        row.incident_id,
                        row.sink,
                        row.change,
                        row.action,
                        json.dumps(row.document, sort_keys=True),
                        now,
                        now,
                    ],
                )
            self._advance(cursor)

        self._transaction(work)

    # --- outbox -------------------------------------------------------------------------------------

    def triggered_sinks(self, incident_ids: Iterable[str]) -> dict[str, list[str]]:
        """incident_id -> sinks it paged (opened or escalated): follow-ups go to the same ones."""
        grouped: dict[str, list[str]] = {}
        for incident_id, sink in self.con.execute(
            "select distinct incident_id, sink from outbox where change in ('opened', 'escalated') "
            "and list_contains(?, incident_id) order by sink",
            [sorted(set(incident_ids))],
        ).fetchall():
            grouped.setdefault(incident_id, []).append(sink)
        return grouped

    def due_deliveries(self, now: dt.datetime, incident_ids: Iterable[str] | None = None) -> list[Delivery]:
        """Undelivered outbox rows whose next attempt is due, in the order they were queued."""
        parameters: list[Any] = [naive_utc(now)]
        only = ""
        if incident_ids is not None:
            only = "and list_contains(?, incident_id)"
            parameters.append(list(incident_ids))
        rows = self.con.execute(
            "select outbox_id, incident_id, sink, change, action, attempts, document from outbox "
            f"where delivered_at is null and next_attempt_at <= ? {only} order by outbox_id",
            parameters,
        ).fetchall()
        return [
            Delivery(outbox_id, incident_id, sink, change, action, attempts, json.loads(document))
            for outbox_id, incident_id, sink, change, action, attempts, document in rows
        ]

    def mark_delivered(self, delivery: Delivery, attempts: int, now: dt.datetime) -> None:
        self.con.execute(
            "update outbox set attempts = ?, delivered_at = ?, last_error = null where outbox_id = ?",
            [attempts, naive_utc(now), delivery.outbox_id],
        )

    def mark_failed(
        self, delivery: Delivery, attempts: int, error: str, next_attempt_at: dt.datetime
    ) -> None:
        self.con.execute(
            "update outbox set attempts = ?, last_error = ?, next_attempt_at = ? where outbox_id = ?",
            [attempts, error, naive_utc(next_attempt_at), delivery.outbox_id],
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
        now = naive_utc(now)
        for path, size in files.items():
            self.con.execute("insert or replace into lake_files values (?, ?, ?)", [path, size, now])
        for partition in completed_partitions:
            self.con.execute("insert or replace into lake_partitions values (?, ?)", [partition, now])


def open_state_read_only(path: Path, wait_seconds: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Read-only connection to the state database, waiting while a writer holds its lock."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() >= deadline:
                raise AlertStateError(f"{path}: cannot open the state database: {error}") from error
            time.sleep(_LOCK_POLL_SECONDS)
