"""The incident engine: the one path from a finding to a person, and `usagewatch incidents`.

Detections and data-quality gates hand their signals (schemas/alert.schema.json) to `raise_signals`;
nothing else routes. Each call first applies what an interrupted run audited but never recorded
(`audit_state.reconcile`), then, in one pass that reads the state and decides in memory before it writes:

1. plans the signals (dedup and suppression by dedup_key, as before): new, duplicate or seen again;
2. correlates every unresolved signal inside a sliding event-time window (`incidents.window`, ending at
   the newest signal), as the state will hold them with this run's signals, into connected components
   (`correlate`): a signal whose detection `links_accounts` ties all of its accounts together and to its
   non-account entity (one IP, /24, ASN, payment fingerprint, template, ring), so signals about the same
   entity tie their accounts together too; signals below `incidents.link_min_risk` link nothing;
3. scores each component as Splunk's risk-based alerting does (`component_risk`): per detection its
   strongest signal plus a share of the others, capped at the detection's `risk.max_contribution`;
4. opens an incident for a component at `incidents.open_threshold` or holding an `immediate` signal, or
   updates the open/acknowledged incident it touches (several touched: merged into the oldest);
5. appends one audit batch naming every new or duplicate signal and every incident change, then applies
   exactly that batch in one transaction: the signals, the incidents with their members and signal
   links, and the outbox rows of their routed copies. `opened` and `escalated` page, `updated` goes
   quietly to the sinks already paged; pipelines/incidents/routing.py delivers the outbox afterwards.

Audit records are write-ahead: the state applies exactly the records appended, in one transaction with
its audit cursor (pipelines/incidents/audit_state.py), so a failure anywhere leaves a change in both or
neither, and a run killed between the append and the transaction is applied by the next run's
`reconcile` exactly as it would have applied itself.

This module imports neither detections.py nor quality.py; they call it. It stays one module (~610 lines):
plan, correlate, update, audit and queue are one pass over the same working incidents; the pure parts
live in correlation.py and settings.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.incidents import audit_state
from pipelines.incidents.alert_state import (
    AlertStateError,
    AlertStore,
    RecordResult,
    parse_time,
    severity_rank,
)
from pipelines.incidents.audit import AuditLog
from pipelines.incidents.correlation import component_risk, correlate, incident_id_for, signal_entity
from pipelines.incidents.routing import DeliveryReport, Router
from pipelines.incidents.settings import IncidentSettings, SignalPolicy
from pipelines.infra.rendering import terminal_safe
from pipelines.stream.contracts import TECHNIQUE_FRAMEWORKS, format_event_time

PAGING_CHANGES = ("opened", "escalated")
TOP_SIGNALS = 10  # evidence lists the strongest signals; the state keeps them all
ENTITIES_IN_SUMMARY = 3


# --- the engine ---------------------------------------------------------------------------------------


def _technique_pairs(techniques: dict[str, list[str]] | None) -> set[tuple[str, str]]:
    """{"attack": [...], "atlas": [...]} as (framework, id) pairs; signals stored before techniques: none."""
    return {(framework, technique) for framework, ids in (techniques or {}).items() for technique in ids}


@dataclass
class _Working:
    """One incident while a run decides about it: what it held before, and what it holds now."""

    incident_id: str
    before: dict[str, Any] | None  # the stored document, None for one opened this run
    signal_ids_before: set[str]
    accounts: set[str]
    entities: set[tuple[str, str]]
    detections: set[str]
    techniques: set[tuple[str, str]]  # (framework, technique id), the union of the signals'
    signal_ids: set[str]
    members: set[str]
    first_seen: str
    last_seen: str
    risk: int
    severity: str
    created_at: str
    status: str
    contributions: list[dict[str, Any]] = field(default_factory=list)
    window_signals: list[dict[str, Any]] = field(default_factory=list)
    merged_into: str | None = None
    # signals joining no incident before this run: only they make an update (a weak signal spanning two
    # incidents is linked to one of them and must not "grow" the other on every re-run)
    fresh_signal_ids: set[str] = field(default_factory=set)

    @classmethod
    def from_stored(cls, record: dict[str, Any], members: set[str], signal_ids: set[str]) -> _Working:
        doc = record["incident"]
        return cls(
            incident_id=doc["incident_id"],
            before=doc,
            signal_ids_before=set(signal_ids),
            accounts=set(doc["account_ids"]),
            entities={(e["type"], e["id"]) for e in doc["entities"]},
            detections=set(doc["detection_ids"]),
            # incidents stored before signals carried techniques have none yet
            techniques=_technique_pairs(doc.get("techniques")),
            signal_ids=set(signal_ids),
            members=set(members),
            first_seen=doc["first_seen"],
            last_seen=doc["last_seen"],
            risk=doc["risk_score"],
            severity=doc["severity"],
            created_at=doc["created_at"],
            status=doc["status"],
            contributions=doc["evidence"]["contributions"],
        )

    def absorb(self, signals: list[dict[str, Any]], nodes: set[str]) -> None:
        # Its accounts are the component's: a signal that links nothing (a weak one naming many
        # accounts) adds its risk here without pulling in accounts of other components.
        self.accounts.update(node.removeprefix("account:") for node in nodes if node.startswith("account:"))
        for signal in signals:
            if not signal["incident_id"] and signal["alert_id"] not in self.signal_ids_before:
                self.fresh_signal_ids.add(signal["alert_id"])
            entity = signal_entity(signal)
            if entity:
                self.entities.add((entity["type"], entity["id"]))
            self.detections.add(signal["detection_id"])
            self.techniques |= _technique_pairs(signal.get("techniques"))
            self.signal_ids.add(signal["alert_id"])
            self.first_seen = min(self.first_seen, signal["window_start"], key=parse_time)
            self.last_seen = max(self.last_seen, signal["window_end"], key=parse_time)
        known = {signal["alert_id"] for signal in self.window_signals}
        self.window_signals += [signal for signal in signals if signal["alert_id"] not in known]
        self.members |= nodes

    def merge(self, other: _Working) -> None:
        self.accounts |= other.accounts
        self.entities |= other.entities
        self.detections |= other.detections
        self.techniques |= other.techniques
        self.signal_ids |= other.signal_ids
        self.members |= other.members
        self.first_seen = min(self.first_seen, other.first_seen, key=parse_time)
        self.last_seen = max(self.last_seen, other.last_seen, key=parse_time)
        self.risk = max(self.risk, other.risk)
        self.severity = max(self.severity, other.severity, key=severity_rank)
        self.absorb(other.window_signals, set())
        other.status, other.merged_into = "resolved", self.incident_id


@dataclass
class EngineRun:
    """What one call changed: signals recorded, and the incident changes routed (documents with `change`)."""

    recorded: RecordResult
    changes: list[dict[str, Any]]
    delivery: DeliveryReport | None = None

    @property
    def pages(self) -> list[dict[str, Any]]:
        return [change for change in self.changes if change["change"] in PAGING_CHANGES]

    def describe(self) -> str:
        recorded = self.recorded
        counts = defaultdict(int)
        for change in self.changes:
            counts[change["change"]] += 1
        incidents = ", ".join(
            f"{counts[name]} {name}" for name in ("opened", "escalated", "updated", "resolved")
        )
        text = (
            f"signals: {len(recorded.new)} new, {len(recorded.suppressed)} suppressed, "
            f"{len(recorded.seen_again)} already known; incidents: {incidents}"
        )
        return text + (f"; routing: {self.delivery.describe()}" if self.delivery else "")


def page_line(change: dict[str, Any]) -> str:
    """One line per page: what on-call receives (the title may carry event data, so it is escaped)."""
    verb = {"opened": "opened", "escalated": f"escalated from {change.get('previous_severity')}"}
    return terminal_safe(
        f"PAGE [{change['severity'].upper()}] incident {change['incident_id'][:12]} "
        f"{verb.get(change['change'], change['change'])}: {change['title']} (risk {change['risk_score']})"
    )


OutputTokens = Callable[[list[tuple[str, list[str], str, str]]], dict[str, int]]
AccountLinks = Callable[[list[str]], dict[str, set[str]]]


def raise_signals(
    store: AlertStore,
    router: Router,
    audit_log: AuditLog,
    signals: list[dict[str, Any]],
    policies: dict[str, SignalPolicy],
    settings: IncidentSettings,
    now: dt.datetime,
    output_tokens: OutputTokens | None = None,
    account_links: AccountLinks | None = None,
) -> EngineRun:
    """Record, correlate, open/update incidents, audit and queue them, in one pass; the caller delivers.

    One pass: the store is only read until everything is decided in memory (the signals' dedup and
    suppression, the correlation window as it will stand with this run's signals, the incidents they
    touch), then one audit batch names every signal and incident change (write-ahead) and the state
    applies that batch in one transaction, outbox rows included. Delivering the outbox is a separate,
    later step by nature: a sink's answer is not known until it is asked, and whatever it does not take
    waits in the outbox for a later run, so delivery results never belong in this transaction.

    `output_tokens` answers [(incident_id, account_ids, first_seen, last_seen)] -> {incident_id: tokens}
    from the lake, for the incident summaries (None: summaries without a token figure).
    `account_links` answers account ids -> org and shared-exit nodes from the lake (None: no such links).
    """
    audit_state.reconcile(store, audit_log, now)
    recorded = store.plan_signals(signals, {d: p.suppression_minutes for d, p in policies.items()})
    risk = {d: (p.max_contribution, p.links_accounts) for d, p in policies.items()}
    changes, incident_entries = _decide_incidents(
        store, router, recorded, risk, settings, now, output_tokens, account_links
    )
    # Write-ahead: the audit log names every signal and incident change before the state knows it; the
    # state applies exactly what was appended (pipelines/incidents/audit_state.py).
    written = audit_state.append(audit_log, audit_state.signal_entries(recorded) + incident_entries, now)
    audit_state.apply_run(store, written, now, recorded, risk)
    return EngineRun(recorded, changes)


def _decide_incidents(
    store: AlertStore,
    router: Router,
    recorded: RecordResult,
    risk: dict[str, tuple[int, bool]],
    settings: IncidentSettings,
    now: dt.datetime,
    output_tokens: OutputTokens | None,
    account_links: AccountLinks | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """(routed copies of the incident changes, their audit entries), decided from the store as it will
    stand once `recorded` and `risk` are written; writes nothing."""
    signals = store.window_signals(settings.window, pending=recorded)
    if not signals:
        return [], []
    policies = store.risk_policies() | risk  # as record_run will leave them: this run's declarations win
    immediate = sorted({account for s in signals if s["immediate"] for account in s["account_ids"]})
    traffic_links = account_links(immediate) if account_links and immediate else None
    components = correlate(signals, policies, settings, traffic_links)
    touching = store.incidents_touching(node for component in components for node in component.nodes)
    # Each component's earliest signal names the incident it would open; the ids already taken are
    # looked up at once (nothing below writes the state).
    founders = [
        min(component.signals, key=lambda s: (parse_time(s["window_start"]), s["alert_id"]))
        for component in components
    ]
    taken = store.known_incident_ids(incident_id_for(signal, settings.window) for signal in founders)
    touched_ids = set(touching.values()) | {s["incident_id"] for s in signals if s["incident_id"]}
    records = store.incident_records(touched_ids)
    members = store.incident_member_sets(touched_ids)
    linked = store.incident_signal_ids(touched_ids)
    working = {
        incident_id: _Working.from_stored(
            record, members.get(incident_id, set()), linked.get(incident_id, set())
        )
        for incident_id, record in records.items()
        if record["status"] != "resolved"
    }
    stamp = format_event_time(now)

    def current(incident_id: str) -> str:
        while working[incident_id].merged_into:
            incident_id = working[incident_id].merged_into
        return incident_id

    for component, earliest in zip(components, founders, strict=True):
        touched = {touching[node] for node in component.nodes if node in touching}
        # A signal leads to the incident it joined earlier only when it lies wholly inside this component:
        # a weak signal naming a crowd (one ASN's users) joined a ring's incident through the ring's
        # members, and must not pull the crowd's other, unlinked accounts in after it.
        touched |= {
            s["incident_id"]
            for s in component.signals
            if s["incident_id"] and all(f"account:{a}" in component.nodes for a in s["account_ids"])
        }
        touched = {current(incident_id) for incident_id in touched if incident_id in working}
        risk, contributions = component_risk(component.signals, policies, settings.same_detection_share)
        immediate = [signal for signal in component.signals if signal["immediate"]]
        if not touched and risk < settings.open_threshold and not immediate:
            continue
        if touched:
            oldest, *others = sorted(touched, key=lambda i: (parse_time(working[i].created_at), i))
            incident = working[oldest]
            for other in others:
                incident.merge(working[other])
        else:
            incident_id = incident_id_for(earliest, settings.window)
            if incident_id in working or incident_id in taken:
                # The earliest finding already founded an incident that was resolved: a new campaign.
                incident_id = hashlib.sha256(f"{incident_id}:{earliest['alert_id']}".encode()).hexdigest()[
                    :32
                ]
            incident = working[incident_id] = _Working(
                incident_id=incident_id,
                before=None,
                signal_ids_before=set(),
                accounts=set(),
                entities=set(),
                detections=set(),
                techniques=set(),
                signal_ids=set(),
                members=set(),
                first_seen=earliest["window_start"],
                last_seen=earliest["window_end"],
                risk=0,
                severity="info",
                created_at=stamp,
                status="open",
            )
        incident.absorb(component.signals, component.nodes)
        if risk >= incident.risk:
            incident.risk, incident.contributions = risk, contributions
        raised = [settings.tier(incident.risk) or "info"] + [signal["severity"] for signal in immediate]
        incident.severity = max([incident.severity, *raised], key=severity_rank)

    changed = [(incident, _change_of(incident)) for incident in working.values()]
    changed = [(incident, change) for incident, change in changed if change]
    if not changed:
        return [], []
    tokens = {}
    if output_tokens is not None:
        tokens = output_tokens(
            [(i.incident_id, sorted(i.accounts), i.first_seen, i.last_seen) for i, _ in changed if i.accounts]
        )
    routed, audit_entries = [], []
    triggered = store.triggered_sinks(incident.incident_id for incident, _ in changed)
    for incident, change in changed:
        document = _document(incident, stamp, tokens.get(incident.incident_id))
        extras: dict[str, Any] = {}
        if change == "escalated":
            extras["previous_severity"] = incident.before["severity"]
        if change == "updated":
            extras["growth"] = _growth(incident)
        routed.append({**document, "change": change, **extras})
        if incident.merged_into:
            audit_entries.append(
                (
                    "incident",
                    {
                        "change": "merged",
                        "incident_id": incident.incident_id,
                        "merged_into": incident.merged_into,
                    },
                )
            )
        if change in PAGING_CHANGES:
            sinks = router.trigger_sinks(document["severity"])
        else:
            sinks = router.follow_up_sinks(triggered.get(incident.incident_id, []), change)
        audit_entries.append(
            audit_state.incident_entry(
                change,
                document,
                incident.members,
                incident.signal_ids - incident.signal_ids_before,
                sinks,
                extras,
            )
        )
    return routed, audit_entries


def _change_of(incident: _Working) -> str | None:
    before = incident.before
    if before is None:
        return "opened"
    if incident.merged_into:
        return "resolved"
    if severity_rank(incident.severity) > severity_rank(before["severity"]):
        return "escalated"
    grew = (
        len(incident.accounts) > len(before["account_ids"])
        or len(incident.entities) > len(before["entities"])
        or len(incident.detections) > len(before["detection_ids"])
        or incident.fresh_signal_ids
        or incident.risk != before["risk_score"]
    )
    return "updated" if grew else None


def _growth(incident: _Working) -> dict[str, int]:
    before = incident.before
    return {
        "accounts": len(incident.accounts) - len(before["account_ids"]),
        "entities": len(incident.entities) - len(before["entities"]),
        "detections": len(incident.detections) - len(before["detection_ids"]),
        "signals": len(incident.fresh_signal_ids),
    }


def _typed_signal(signal: dict[str, Any]) -> dict[str, Any]:
    entity = signal_entity(signal) or {"type": "account", "id": signal["entity_id"]}
    return {
        "alert_id": signal["alert_id"],
        "detection_id": signal["detection_id"],
        "severity": signal["severity"],
        "risk_score": signal["risk_score"],
        "immediate": signal["immediate"],
        "entity": entity,
        "account_count": len(signal["account_ids"]),
        "window_start": signal["window_start"],
        "window_end": signal["window_end"],
    }


def _document(incident: _Working, stamp: str, tokens: int | None) -> dict[str, Any]:
    """The incident document (schemas/incident.schema.json) as the incident now stands."""
    before = incident.before or {}
    signals = sorted(
        incident.window_signals, key=lambda s: (-s["risk_score"], s["window_start"], s["alert_id"])
    )
    dominant_id = incident.contributions[0]["detection_id"] if incident.contributions else None
    dominant = next((s for s in signals if s["detection_id"] == dominant_id), signals[0] if signals else None)
    title = before.get("title", "")
    runbook = before.get("runbook", "")
    if dominant is not None:
        runbook = dominant["runbook"]
        scope = (
            f"{len(incident.accounts)} account{'s' if len(incident.accounts) != 1 else ''}"
            if incident.accounts
            else dominant["entity_id"]
        )
        title = f"{dominant['title']}: {scope}, {len(incident.detections)} detection(s)"
        if len(incident.accounts) > 1:
            # several accounts are a campaign first: on-call reads what it is, then the strongest evidence
            title = (
                f"Campaign of {len(incident.accounts)} linked accounts, {len(incident.detections)} "
                f"detection(s); strongest: {dominant['title'].lower()}"
            )
    evidence: dict[str, Any] = {
        "contributions": incident.contributions,
        "top_signals": [_typed_signal(s) for s in signals[:TOP_SIGNALS]] or before["evidence"]["top_signals"],
    }
    if tokens is not None:
        evidence["output_tokens"] = int(tokens)
    degraded = sum(1 for s in incident.window_signals if "data_quality" in s["evidence"])
    if degraded:
        evidence["data_quality"] = f"degraded: {degraded} signal(s) ran over failed or unvalidated partitions"
    entities = [{"type": kind, "id": identifier} for kind, identifier in sorted(incident.entities)]
    document = {
        "incident_id": incident.incident_id,
        "title": title,
        "severity": incident.severity,
        "status": incident.status,
        "risk_score": incident.risk,
        "account_ids": sorted(incident.accounts),
        "entities": entities,
        "detection_ids": sorted(incident.detections),
        "techniques": {
            framework: sorted(technique for kind, technique in incident.techniques if kind == framework)
            for framework in TECHNIQUE_FRAMEWORKS
        },
        "signal_count": len(incident.signal_ids),
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "summary": _summary(incident, entities, tokens),
        "evidence": evidence,
        "runbook": runbook,
        "dedup_key": incident.incident_id,
        "created_at": incident.created_at,
        "updated_at": stamp,
    }
    for key in ("acknowledged", "resolved"):
        if key in before:
            document[key] = before[key]
    if incident.merged_into:
        document["merged_into"] = incident.merged_into
        document["resolved"] = {
            "by": "usagewatch",
            "note": f"merged into {incident.merged_into}",
            "at": stamp,
        }
    return document


def _summary(incident: _Working, entities: list[dict[str, str]], tokens: int | None) -> str:
    detections = ", ".join(
        f"{item['detection_id']} ({item['signals']} signal{'s' if item['signals'] != 1 else ''}, "
        f"+{item['contribution']})"
        for item in incident.contributions
    ) or ", ".join(sorted(incident.detections))
    accounts = sorted(incident.accounts)
    who = (
        f"{len(accounts)} account{'s' if len(accounts) != 1 else ''} ("
        + ", ".join(accounts[:ENTITIES_IN_SUMMARY])
        + (f" and {len(accounts) - ENTITIES_IN_SUMMARY} more" if len(accounts) > ENTITIES_IN_SUMMARY else "")
        + ")"
        if accounts
        else "no account"
    )
    by_type: dict[str, list[str]] = defaultdict(list)
    for entity in entities:
        by_type[entity["type"]].append(entity["id"])
    infrastructure = "; ".join(
        f"{len(ids)} {kind}{'s' if len(ids) != 1 else ''} ({', '.join(ids[:ENTITIES_IN_SUMMARY])}"
        + (", ..." if len(ids) > ENTITIES_IN_SUMMARY else "")
        + ")"
        for kind, ids in sorted(by_type.items())
    )
    volume = f" They drew {tokens:,} output tokens in that time." if tokens is not None else ""
    return (
        f"{who} tied together by {len(incident.detections)} detection(s): {detections}, "
        f"from {incident.first_seen} to {incident.last_seen}."
        + (f" Infrastructure: {infrastructure}." if infrastructure else "")
        + volume
        + f" Risk {incident.risk} ({incident.severity})."
    )


# --- acknowledge / resolve ----------------------------------------------------------------------------


def change_status(
    store: AlertStore,
    router: Router,
    audit_log: AuditLog,
    incident_id: str,
    change: str,
    by: str,
    note: str | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """Acknowledge or resolve an incident and every signal in it; audited first, then routed to the sinks
    it paged. Returns the routed copy."""
    if not by.strip():
        raise AlertStateError("--by must name who is acting")
    audit_state.reconcile(store, audit_log, now)
    allowed = ("open",) if change == "acknowledged" else ("open", "acknowledged")
    record = store.get_incident(incident_id)
    if record["status"] not in allowed:
        raise AlertStateError(
            f"incident {record['incident_id']} is {record['status']}; cannot mark it {change}"
        )
    sinks = router.follow_up_sinks(
        store.triggered_sinks([record["incident_id"]]).get(record["incident_id"], []), change
    )
    entry = audit_state.status_entry(change, record["incident"], by, note, sinks)
    return audit_state.apply_records(store, audit_state.append(audit_log, [entry], now), now)


def lake_output_tokens(con) -> OutputTokens:
    """An OutputTokens over an open lake connection: one query for every incident of a run."""

    def query(incidents: list[tuple[str, list[str], str, str]]) -> dict[str, int]:
        if not incidents:
            return {}
        rows = [
            {"incident_id": i, "account_id": a, "start": parse_time(s), "end": parse_time(e)}
            for i, accounts, s, e in incidents
            for a in accounts
        ]
        con.register("incident_accounts", pa.Table.from_pylist(rows))
        try:
            return dict(
                con.execute(
                    "select i.incident_id, coalesce(sum(e.output_tokens), 0)::bigint "
                    "from incident_accounts i left join events e on e.account_id = i.account_id "
                    'and e.event_time >= i.start and e.event_time < i."end" group by 1'
                ).fetchall()
            )
        finally:
            con.unregister("incident_accounts")

    return query


def lake_account_links(con) -> AccountLinks:
    """An AccountLinks over an open lake connection, in one query: each account's organisation
    (`org:ID`) and the anonymizing exits (`exit:IP`, asn_type vpn/hosting/tor) it shares with at least
    one other of the accounts asked about."""

    def query(account_ids: list[str]) -> dict[str, set[str]]:
        con.register("linking_accounts", pa.Table.from_pylist([{"account_id": a} for a in account_ids]))
        try:
            rows = con.execute(
                """
                with asked as (
                    select e.* from events e semi join linking_accounts l on e.account_id = l.account_id
                ),
                orgs as (
                    select account_id, 'org:' || min(org_id) as node from asked
                    where org_id is not null group by account_id
                ),
                exits as (
                    select account_id, source_ip from asked
                    where asn_type in ('vpn', 'hosting', 'tor') group by all
                ),
                -- an exit only ties accounts together when two or more of them used it
                shared_exits as (
                    select account_id, 'exit:' || source_ip as node from exits
                    where source_ip in (
                        select source_ip from exits group by source_ip having count(*) >= 2
                    )
                )
                select account_id, node from orgs union all select account_id, node from shared_exits
                """
            ).fetchall()
        finally:
            con.unregister("linking_accounts")
        links: dict[str, set[str]] = defaultdict(set)
        for account, node in rows:
            links[account].add(node)
        return links

    return query
