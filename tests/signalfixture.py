"""Signals built by hand (valid against schemas/alert.schema.json), for the incident engine's tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from lakefixture import read_jsonl

from pipelines.commands import cli
from pipelines.incidents import audit
from pipelines.incidents import engine as incidents
from pipelines.incidents import settings as incident_config
from pipelines.incidents.alert_state import AlertStore
from pipelines.incidents.alerts import alert_id, dedup_key
from pipelines.incidents.routing import load_router
from pipelines.incidents.settings import SignalPolicy
from pipelines.infra.config import load_config
from pipelines.stream.contracts import format_event_time, validate_alert, validate_incident

START = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.UTC)
RING = [f"ring-{index:02d}" for index in range(40)]
# Declared here, not read from sql/detections: the tests pin the engine, not today's tuning.
POLICIES = {
    "shared_hosting_infrastructure": SignalPolicy(60, 60, True),
    "ring_clustering": SignalPolicy(360, 100, True),
    "shared_payment_fingerprint": SignalPolicy(360, 70, True),
    "prompt_template_reuse": SignalPolicy(360, 50, True),
    "extraction_profile": SignalPolicy(360, 80, False),
    "impossible_travel": SignalPolicy(60, 50, False),
    "restricted_region_access": SignalPolicy(60, 100, False),
}
# A few ids per detection, enough to see incidents carry the union of their signals' techniques.
TECHNIQUES = {
    "shared_hosting_infrastructure": {"attack": ["T1090"], "atlas": ["AML.T0008.005"]},
    "ring_clustering": {"attack": ["T1585"], "atlas": ["AML.T0021", "AML.T0024.002"]},
    "extraction_profile": {"attack": ["T1119"], "atlas": ["AML.T0024.002"]},
}
JSONL_SINK = "    - {name: file, type: jsonl, path: routed.jsonl, min_severity: medium}\n"
ENTITY_TYPES = {
    "shared_hosting_infrastructure": "ip",
    "ring_clustering": "ring",
    "shared_payment_fingerprint": "payment",
    "prompt_template_reuse": "prompt_fingerprint",
}


def signal(
    detection: str,
    entity_id: str,
    accounts: list[str],
    hour: int,
    risk: int,
    severity: str = "high",
    immediate: bool = False,
) -> dict:
    start = START + dt.timedelta(hours=hour)
    key = dedup_key(detection, [entity_id])
    document = {
        "alert_id": alert_id(key, start, POLICIES[detection].suppression_minutes),
        "detection_id": detection,
        "title": detection.replace("_", " ").capitalize(),
        "severity": severity,
        "entity_type": ENTITY_TYPES.get(detection, "account"),
        "entity_id": entity_id,
        "account_ids": sorted(accounts),
        "window_start": format_event_time(start),
        "window_end": format_event_time(start + dt.timedelta(hours=1)),
        "evidence": {},
        "runbook": f"Investigate: {detection}. Respond: block.",
        "dedup_key": key,
        "created_at": format_event_time(NOW),
        "risk_score": risk,
        "immediate": immediate,
        "techniques": TECHNIQUES.get(detection, {"attack": [], "atlas": []}),
    }
    validate_alert(document)
    return document


def ring_signals(members: list[str] = RING) -> list[dict]:
    """Five detections over six hours about one 40-account ring."""
    signals = [signal("ring_clustering", "ring:ring-00", members, 5, 60)]
    for hour in range(6):  # the hosting IP, hour by hour, each time another part of the ring
        part = members[(hour * 7) % len(members) :][:15]
        signals.append(signal("shared_hosting_infrastructure", "203.0.113.7", part, hour, 40))
    signals.append(signal("shared_payment_fingerprint", "card-ab12", members[:10], 2, 50))
    signals.append(signal("prompt_template_reuse", "tmpl-77", members[20:], 3, 30, severity="medium"))
    signals += [signal("extraction_profile", account, [account], 4, 50) for account in members[::4]]
    return signals


class Engine:
    """A state database, an audit log and sinks (default: JSONL, min severity medium) in a folder."""

    def __init__(self, folder: Path, sinks: str = JSONL_SINK, incident_settings: str = "", retry: str = ""):
        config_file = folder / "usagewatch.yml"
        config_file.write_text(
            "state: {path: state.duckdb, audit_log: audit.jsonl}\n"
            f"routing:\n{retry}  sinks:\n{sinks}" + incident_settings
        )
        self.config = load_config(str(config_file))
        self.folder = folder
        self.router = load_router(self.config)
        self.settings = incident_config.incident_settings(self.config)

    def run(
        self, signals: list[dict], now: dt.datetime = NOW, links: dict[str, set[str]] | None = None
    ) -> incidents.EngineRun:
        """`links` (account -> org:/exit: nodes) stands in for the lake's answer (lake_account_links)."""
        account_links = (lambda accounts: {a: links[a] for a in accounts if a in links}) if links else None
        with AlertStore.open(self.folder / "state.duckdb") as store:
            run = incidents.raise_signals(
                store,
                self.router,
                audit.open_audit_log(self.config),
                signals,
                POLICIES,
                self.settings,
                now,
                account_links=account_links,
            )
            run.delivery = self.router.deliver(store, now)
        for change in run.changes:
            validate_incident(change)
        return run

    def routed(self) -> list[dict]:
        path = self.folder / "routed.jsonl"
        return read_jsonl(path) if path.exists() else []

    def store(self) -> AlertStore:
        return AlertStore.open(self.folder / "state.duckdb")


def assert_each_once(engine: Engine, signal_ids: Iterable[str], changes: list[tuple[str, str]]) -> None:
    """Every signal, and each incident change (incident id, change) in order, exactly once in the state,
    the audit log and the JSONL sink, with nothing left in the outbox; the chain verifies and the state
    agrees with it."""
    expected_signals = sorted(set(signal_ids))
    records = read_jsonl(engine.folder / "audit.jsonl")
    audited_signals = sorted(r["payload"]["alert"]["alert_id"] for r in records if r["kind"] == "signal")
    assert audited_signals == expected_signals
    # An engine's change carries the incident document, an acknowledgement or resolution only its id.
    audited_changes = [
        (r["payload"].get("incident_id") or r["payload"]["incident"]["incident_id"], r["payload"]["change"])
        for r in records
        if r["kind"] == "incident"
    ]
    assert audited_changes == changes
    with engine.store() as store:
        assert sorted(row["alert_id"] for row in store.list_alerts()) == expected_signals
        assert {row["incident_id"] for row in store.list_incidents()} == {incident for incident, _ in changes}
        assert store.pending_deliveries() == 0
    assert [(routed["incident_id"], routed["change"]) for routed in engine.routed()] == changes
    assert audit.verify(engine.folder / "audit.jsonl")[0]
    assert cli.main(["audit", "verify", "--config", str(engine.config.path)]) == 0  # state agrees too
