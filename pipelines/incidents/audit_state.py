"""The audit log and the state agree: every state change is applied from its write-ahead audit record.

Signals, incident changes (opened, updated, escalated, merged, resolved by a merge) and status changes
(`incidents ack|resolve`) are written in two steps:

1. their audit records are appended and fsynced, each carrying everything its state change needs (the
   signal and its suppression; the incident document, its members, the signals it newly holds and the
   sinks its change is routed to; who acknowledged or resolved);
2. the state applies exactly those records, in one transaction that also moves the state's audit cursor
   (alert_state.audit_cursor: seq, hash and end offset of the last applied record) past them.

One engine run is one such pair: a single append names its signals and incident changes together, and
`apply_run` writes them in a single transaction. Before that a run appended them in two batches; the
records are the same and a batch leaves no mark in the log, so `reconcile` applies an older run's
pending records (signals, incident changes or both) the same way.

`reconcile` runs before the engine or on-call change anything: records after the cursor are those of a
process that failed or was killed between the two steps, and are applied then. So after any failure a
change is either in neither place (an append that failed is cut off again, and the next run raises it
anew) or in both exactly once; the cursor, committed with the change, is the records' idempotency id,
so nothing is applied or audited twice. Records of other kinds (reports) are passed over.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from pipelines.incidents.alert_state import (
    AlertStateError,
    AlertStore,
    AuditCursor,
    IncidentChanges,
    OutboxRow,
    RecordResult,
    parse_time,
)
from pipelines.incidents.audit import AuditBatch, AuditLog
from pipelines.incidents.sinks import ACTION_OF_CHANGE
from pipelines.stream.contracts import format_event_time

logger = logging.getLogger(__name__)

SIGNAL = "signal"
INCIDENT = "incident"
STATUS_CHANGES = ("acknowledged", "resolved")

Item = tuple[dict[str, Any], int | None]  # (audit record, byte offset just after it, when known)


# --- write-ahead: append, then apply what was appended ---------------------------------------------


def append(audit_log: AuditLog, entries: list[tuple[str, dict[str, Any]]], now: dt.datetime) -> list[Item]:
    """Append the records (all or none); a failure is an AlertStateError saying nothing was recorded."""
    try:
        batch = audit_log.append_batch(entries, now)
    except (OSError, ValueError) as error:
        raise _unusable(audit_log, "append to", error) from None
    return _items(batch)


def _unusable(audit_log: AuditLog, doing: str, error: Exception) -> AlertStateError:
    return AlertStateError(
        f"cannot {doing} the audit log {audit_log.path}: {error}; nothing was recorded, "
        "so the next run raises it again"
    )


def _items(batch: AuditBatch) -> list[Item]:
    return [(record, None) for record in batch.records[:-1]] + (
        [(batch.records[-1], batch.end_offset)] if batch.records else []
    )


def _cursor(item: Item) -> AuditCursor:
    record, end_offset = item
    return AuditCursor(record["seq"], record["hash"], end_offset)


def signal_entries(recorded: RecordResult) -> list[tuple[str, dict[str, Any]]]:
    """One record per new or duplicate signal, with the suppression window it opens (if it does)."""
    entries = []
    for signal, suppressed_by in [(signal, None) for signal in recorded.new] + recorded.suppressed:
        payload: dict[str, Any] = {"alert": signal, "suppressed_by": suppressed_by}
        opened = recorded.suppressions.get(signal["dedup_key"])
        if opened and opened[0] == signal["alert_id"]:
            payload["suppressed_until"] = format_event_time(opened[1])
        entries.append((SIGNAL, payload))
    return entries


def _signal_result(records: list[dict[str, Any]]) -> RecordResult:
    result = RecordResult()
    for record in records:
        payload = record["payload"]
        signal = payload["alert"]
        if payload["suppressed_by"] is None:
            result.new.append(signal)
        else:
            result.suppressed.append((signal, payload["suppressed_by"]))
        if "suppressed_until" in payload:
            result.suppressions[signal["dedup_key"]] = (
                signal["alert_id"],
                parse_time(payload["suppressed_until"]),
            )
    return result


def incident_entry(
    change: str,
    document: dict[str, Any],
    members: set[str],
    new_signal_ids: set[str],
    sinks: list[str],
    routed_extras: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """An incident change: the document as it now stands and what the state and outbox need besides."""
    return (
        INCIDENT,
        {
            "change": change,
            "incident": document,
            "members": sorted(members),
            "signal_ids": sorted(new_signal_ids),
            "sinks": sinks,
            **routed_extras,
        },
    )


def status_entry(change: str, document: dict[str, Any], by: str, note: str | None, sinks: list[str]):
    return (
        INCIDENT,
        {
            "change": change,
            "incident_id": document["incident_id"],
            "by": by,
            "note": note,
            "signal_count": document["signal_count"],
            "sinks": sinks,
        },
    )


def _is_status(payload: dict[str, Any]) -> bool:
    return "by" in payload


def apply_run(
    store: AlertStore,
    items: list[Item],
    now: dt.datetime,
    refresh: RecordResult | None = None,
    risk: dict[str, tuple[int, bool]] | None = None,
) -> None:
    """Apply a run's signal and incident-change records in one transaction that moves the cursor past
    the last of them, with `refresh` (signals seen again) and `risk` (the producer's policies), which
    are not audited. The records are taken as written, so the live run and `reconcile` write the same."""
    signals = _signal_result([record for record, _ in items if record["kind"] == SIGNAL])
    if refresh is not None:
        signals.seen_again, signals.severities = refresh.seen_again, refresh.severities
    incidents = IncidentChanges()
    for record, _ in items:
        payload = record["payload"]
        if record["kind"] != INCIDENT or "incident" not in payload:
            continue  # a signal (above), or `merged`: the resolved record of the merged incident follows
        document, change = payload["incident"], payload["change"]
        incident_id = document["incident_id"]
        incidents.documents.append(document)
        if not document.get("merged_into"):
            incidents.members[incident_id] = set(payload["members"])
            incidents.signal_ids[incident_id] = set(payload["signal_ids"])
        routed = {**document, "change": change}
        routed |= {key: payload[key] for key in ("previous_severity", "growth") if key in payload}
        incidents.outbox += [
            OutboxRow(incident_id, sink, change, ACTION_OF_CHANGE[change], routed)
            for sink in payload["sinks"]
        ]
    store.record_run(signals, incidents, now, _cursor(items[-1]) if items else None, risk)


def _apply_status(store: AlertStore, item: Item) -> dict[str, Any]:
    """An acknowledgement or resolution, at the time its record was written; returns the routed copy."""
    record = item[0]
    payload = record["payload"]
    change, incident_id = payload["change"], payload["incident_id"]
    stamp = record["ts"]
    stored = store.incident_records([incident_id])[incident_id]["incident"]
    document = {
        **stored,
        "status": change,
        "updated_at": stamp,
        change: {"by": payload["by"], "note": payload["note"], "at": stamp},
    }
    routed = {**document, "change": change}
    outbox = [
        OutboxRow(incident_id, sink, change, ACTION_OF_CHANGE[change], routed) for sink in payload["sinks"]
    ]
    allowed = ("open",) if change == "acknowledged" else ("open", "acknowledged")
    at = dt.datetime.fromisoformat(stamp)
    store.transition_incident(
        incident_id, allowed, change, payload["by"], payload["note"], at, document, outbox, _cursor(item)
    )
    return routed


def apply_records(store: AlertStore, items: list[Item], now: dt.datetime) -> dict[str, Any] | None:
    """Apply audit records in order, each run of one group (signals and incident changes; a status
    change; other records) in one transaction with the cursor moved past it. Returns the routed copy of
    the last status change (what `incidents ack|resolve` prints)."""
    routed = None
    position = 0
    while position < len(items):
        record = items[position][0]
        kind = record["kind"]
        if kind == INCIDENT and _is_status(record["payload"]):
            routed = _apply_status(store, items[position])
            position += 1
            continue
        end = position
        while end + 1 < len(items) and _group(items[end + 1][0]) == _group(record):
            end += 1
        run = items[position : end + 1]
        if kind in (SIGNAL, INCIDENT):
            apply_run(store, run, now)
        elif run[-1][1] is not None:  # a report or another record the state does not hold
            store.set_audit_cursor(_cursor(run[-1]))
        position = end + 1
    return routed


def _group(record: dict[str, Any]) -> str:
    """A run's signals and incident changes apply together; a status change alone; others not at all."""
    if record["kind"] == INCIDENT:
        return "status" if _is_status(record["payload"]) else "run"
    return "run" if record["kind"] == SIGNAL else "other"


# --- reconciliation on start ---------------------------------------------------------------------------


def reconcile(store: AlertStore, audit_log: AuditLog, now: dt.datetime) -> int:
    """Apply the records a failed or killed run appended but never applied; return how many.

    A state without a cursor (new, or from before write-ahead records) starts at the log's current
    end: an older state's history is taken as it stands, and a log named by `state.audit_log` may be
    shared with other state databases.
    """
    cursor = store.audit_cursor()
    try:
        if cursor is None:
            store.set_audit_cursor(AuditCursor(*audit_log.tail()))
            return 0
        pending = audit_log.records_after(cursor.end_offset)
    except OSError as error:
        raise _unusable(audit_log, "read", error) from None
    except ValueError as error:  # shorter than the state has applied, or an unreadable record
        raise AlertStateError(str(error)) from None
    if not pending:
        return 0
    if pending[0][0]["prev_hash"] != cursor.hash:
        raise AlertStateError(
            f"{audit_log.path}: the record after the one the state applied last (seq {cursor.seq}) does not "
            "chain to it: the log was edited or replaced; run `usagewatch audit verify`"
        )
    apply_records(store, pending, now)
    applied = sum(1 for record, _ in pending if record["kind"] in (SIGNAL, INCIDENT))
    if applied:
        logger.warning(
            f"audit: applied {applied} record(s) an interrupted run had audited but not recorded "
            f"(seq {pending[0][0]['seq']}..{pending[-1][0]['seq']})"
        )
    return applied


# --- cross-check for `audit verify`: the state against the chain -------------------------------------


def cross_check(store: AlertStore, records: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(differences between the state and the records it applied, first in log order; pending count).

    Every signal and incident in the state must have its audit records and the other way round; each
    incident's status must be the one its last record gives, each signal's status one its incident was
    given by a record, and each signal must belong to the incident the records link it to. A signal
    audited twice means it was deleted from the state and raised again. Records after the state's
    cursor are pending (a run was interrupted; the next one applies them), not differences.
    """
    cursor = store.audit_cursor()
    applied = [r for r in records if cursor is None or r["seq"] <= cursor.seq]
    found: list[tuple[float, str]] = []
    if cursor is not None and (records[-1]["seq"] if records else -1) < cursor.seq:
        last = records[-1]["seq"] if records else "no record"
        found.append(
            (-1, f"the state applied records up to seq {cursor.seq}, the log ends at {last}: cut off")
        )
    signal_seq: dict[str, int] = {}
    incident_last: dict[str, tuple[str, int]] = {}
    incident_statuses: dict[str, set[str]] = {}
    links: dict[str, tuple[str, int]] = {}
    unlinked: set[str] = set()
    for record in applied:
        payload, seq = record["payload"], record["seq"]
        if record["kind"] == SIGNAL:
            alert_id = payload["alert"]["alert_id"]
            if alert_id in signal_seq:
                found.append(
                    (
                        seq,
                        f"signal {alert_id} is audited twice (records {signal_seq[alert_id]} and {seq}): "
                        "it was deleted from the state and raised again",
                    )
                )
            signal_seq.setdefault(alert_id, seq)
        elif record["kind"] == INCIDENT and "change" in payload and payload["change"] != "merged":
            if _is_status(payload):
                incident_id, status = payload["incident_id"], payload["change"]
            else:
                incident_id, status = payload["incident"]["incident_id"], payload["incident"]["status"]
                if "signal_ids" not in payload:  # written before records carried their links
                    unlinked.add(incident_id)
                links |= {alert_id: (incident_id, seq) for alert_id in payload.get("signal_ids", [])}
            incident_last[incident_id] = (status, seq)
            incident_statuses.setdefault(incident_id, set()).add(status)
    state_signals = {
        alert_id: (status, incident_id)
        for alert_id, status, incident_id in store.con.execute(
            "select alert_id, status, incident_id from signals"
        ).fetchall()
    }
    state_incidents = dict(store.con.execute("select incident_id, status from incidents").fetchall())
    never = float("inf")  # a state row without any record sorts after every record
    for alert_id, seq in signal_seq.items():
        if alert_id not in state_signals:
            found.append((seq, f"signal {alert_id} (audit record {seq}) is missing from the state: deleted"))
    for incident_id, (status, seq) in incident_last.items():
        if incident_id not in state_incidents:
            found.append(
                (seq, f"incident {incident_id} (audit record {seq}) is missing from the state: deleted")
            )
        elif state_incidents[incident_id] != status:
            found.append(
                (
                    seq,
                    f"incident {incident_id} is {state_incidents[incident_id]} in the state, but its last "
                    f"audit record (seq {seq}) says {status}",
                )
            )
    for incident_id in sorted(set(state_incidents) - set(incident_last)):
        found.append((never, f"incident {incident_id} is in the state without an audit record"))
    for alert_id, (status, incident_id) in sorted(state_signals.items()):
        seq = signal_seq.get(alert_id)
        if seq is None:
            found.append((never, f"signal {alert_id} is in the state without an audit record"))
            continue
        linked, link_seq = links.get(alert_id, (None, seq))
        if linked != incident_id and not {linked, incident_id} & unlinked:
            found.append(
                (
                    link_seq,
                    f"signal {alert_id} is linked to incident {incident_id or 'none'} in the state, "
                    f"the audit log links it to {linked or 'none'}",
                )
            )
        elif status != "open" and status not in incident_statuses.get(incident_id or "", set()):
            found.append(
                (
                    seq,
                    f"signal {alert_id} is {status} in the state, but no audit record makes its incident "
                    f"({incident_id or 'none'}) {status}",
                )
            )
    found.sort(key=lambda item: item[0])
    return [message for _, message in found], len(records) - len(applied)


def verify_state(state_file: str, log_path: str) -> tuple[bool, str]:
    """`audit verify`'s second half: (ok, message) for the state database against an intact chain."""
    with open(log_path, "rb") as handle:
        records = [json.loads(line) for line in handle]
    with AlertStore.open(state_file) as store:
        differences, pending = cross_check(store, records)
    note = f"; {pending} record(s) pending: the next run applies them" if pending else ""
    if differences:
        return False, (
            f"{state_file}: the state differs from the audit log, {len(differences)} difference(s); "
            f"first: {differences[0]}{note}"
        )
    return True, f"{state_file}: state agrees with the audit log{note}"
