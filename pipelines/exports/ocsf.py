"""Signals and incidents as OCSF Detection Findings (class_uid 2004, category Findings), OCSF 1.5.0.

A SIEM (Splunk, Sentinel, Security Lake, Chronicle) ingests these from a JSONL file or a Kafka topic
(`format: ocsf` on those routing sinks) or from `usagewatch incidents|signals export --ocsf`. Mapping:

- finding_info: uid = alert_id / incident_id, title, desc (the incident summary; for a signal its entity
  and window), types (the detection, or `incident`), analytic (the detection as a Rule; an incident is
  the correlation rule with every detection under related_analytics), first/last seen = event time,
  attacks[] = ATT&CK techniques (technique uid/name/src_url, a sub-technique also as sub_technique, one
  object per tactic, the ATT&CK version; names and tactics from schemas/reference/techniques.json).
  MITRE ATLAS has no OCSF 1.5 attribute: its ids go under unmapped.atlas_techniques.
- severity_id: info 1, low 2, medium 3, high 4, critical 5; risk_score = our risk (signal 0-100,
  incident accumulated), risk_level_id from the severity; status_id: open New, acknowledged In Progress,
  resolved Resolved; activity_id from the routed change (opened Create, resolved Close, else Update).
- time = when the finding was made or last changed (ms since epoch); start_time/end_time = event time.
- observables: every account (Resource UID, name resources.uid, also listed as resources[]), IPs (IP
  Address), ASNs, subnets (Other), payment and prompt-template fingerprints (Hash: opaque already).
- evidences: a signal's evidence object; an incident's per-detection risk contributions.
- metadata: product usagewatch, version 1.5.0, uid = the document's id, correlation_uid = the incident.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipelines.exports.techniques import (
    attack_tactics,
    framework_version,
    technique_name,
    technique_url,
    techniques_of,
)

OCSF_VERSION = "1.5.0"
CLASS_UID = 2004  # Detection Finding
CATEGORY_UID = 2  # Findings
PRODUCT = {"name": "usagewatch", "vendor_name": "usagewatch", "uid": "usagewatch"}

SEVERITY_IDS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
RISK_LEVEL_IDS = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
STATUS_IDS = {"open": 1, "acknowledged": 2, "resolved": 4}  # New, In Progress, Resolved
ACTIVITY_CREATE, ACTIVITY_UPDATE, ACTIVITY_CLOSE = 1, 2, 3
ANALYTIC_RULE = 1

# observable type_id of OCSF's dictionary
_IP_ADDRESS, _HASH, _RESOURCE_UID, _OTHER = 2, 8, 10, 99
# incident entity type -> (observable name, type_id, type caption)
_ENTITY_OBSERVABLES = {
    "ip": ("src_endpoint.ip", _IP_ADDRESS, "IP Address"),
    "subnet": ("src_endpoint.subnet_uid", _OTHER, "Subnet"),
    "asn": ("src_endpoint.autonomous_system.number", _OTHER, "Autonomous System Number"),
    "payment": ("unmapped.payment_fingerprint", _HASH, "Hash"),
    "template": ("unmapped.prompt_fingerprint", _HASH, "Hash"),
    "ring": ("unmapped.ring_id", _OTHER, "Ring"),
    "region": ("src_endpoint.location.country", _OTHER, "Country"),
    "partition": ("unmapped.lake_partition", _OTHER, "Lake partition"),
}
# a signal's entity_type -> the incident's entity type (pipelines.incidents.signal_entity's names)
_SIGNAL_ENTITY_TYPES = {"prompt_fingerprint": "template"}


def epoch_ms(text: str) -> int:
    moment = dt.datetime.fromisoformat(text)
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp() * 1000)


def attacks(document: dict[str, Any]) -> list[dict[str, Any]]:
    """OCSF attack objects for the document's ATT&CK techniques: technique (the parent of a
    sub-technique), sub_technique, one object per tactic the technique serves, the ATT&CK version."""
    result = []
    version = framework_version("attack")
    for technique_id in techniques_of(document)["attack"]:
        parent = technique_id.split(".")[0]
        attack: dict[str, Any] = {
            "technique": {
                "uid": parent,
                "name": technique_name(parent) or parent,
                "src_url": technique_url("attack", parent),
            }
        }
        if parent != technique_id:
            attack["sub_technique"] = {
                "uid": technique_id,
                "name": technique_name(technique_id) or technique_id,
                "src_url": technique_url("attack", technique_id),
            }
        if version:
            attack["version"] = version
        tactics = attack_tactics(technique_id)
        for uid, name in tactics:
            tactic = {"name": name} | ({"uid": uid} if uid else {})
            result.append(attack | {"tactic": tactic})
        if not tactics:
            result.append(attack)
    return result


def _observables(accounts: list[str], entities: list[dict[str, str]]) -> list[dict[str, Any]]:
    observables = [
        {"name": "resources.uid", "type_id": _RESOURCE_UID, "type": "Resource UID", "value": account}
        for account in accounts
    ]
    for entity in entities:
        name, type_id, caption = _ENTITY_OBSERVABLES[entity["type"]]
        observables.append({"name": name, "type_id": type_id, "type": caption, "value": entity["id"]})
    return observables


def _resources(accounts: list[str]) -> list[dict[str, Any]]:
    return [{"uid": account, "type": "API account"} for account in accounts]


def _base(document: dict[str, Any], uid: str, severity: str, activity_id: int, time: str) -> dict[str, Any]:
    atlas = techniques_of(document)["atlas"]
    finding: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "type_uid": CLASS_UID * 100 + activity_id,
        "time": epoch_ms(time),
        "severity_id": SEVERITY_IDS[severity],
        "severity": severity.capitalize(),
        "risk_level_id": RISK_LEVEL_IDS[severity],
        "metadata": {"version": OCSF_VERSION, "product": dict(PRODUCT), "uid": uid},
    }
    if atlas:
        finding["unmapped"] = {
            "atlas_techniques": [
                {"uid": technique_id, "name": technique_name(technique_id) or technique_id,
                 "src_url": technique_url("atlas", technique_id)}
                for technique_id in atlas
            ]
        }  # fmt: skip
    return finding


def signal_finding(signal: dict[str, Any]) -> dict[str, Any]:
    """One signal (schemas/alert.schema.json) as a Detection Finding."""
    accounts = signal["account_ids"]
    entity_type = _SIGNAL_ENTITY_TYPES.get(signal["entity_type"], signal["entity_type"])
    if entity_type == "ip" and "/" in signal["entity_id"]:
        entity_type = "subnet"
    entities = [] if entity_type == "account" else [{"type": entity_type, "id": signal["entity_id"]}]
    finding = _base(signal, signal["alert_id"], signal["severity"], ACTIVITY_CREATE, signal["created_at"])
    finding.update(
        message=signal["title"],
        start_time=epoch_ms(signal["window_start"]),
        end_time=epoch_ms(signal["window_end"]),
        risk_score=signal["risk_score"],
        finding_info={
            "uid": signal["alert_id"],
            "title": signal["title"],
            "desc": (
                f"{signal['title']}: {signal['entity_type']} {signal['entity_id']}, "
                f"{len(accounts)} account(s), {signal['window_start']} to {signal['window_end']}."
            ),
            "types": [signal["detection_id"]],
            "analytic": {"uid": signal["detection_id"], "name": signal["detection_id"],
                         "type_id": ANALYTIC_RULE, "type": "Rule"},
            "first_seen_time": epoch_ms(signal["window_start"]),
            "last_seen_time": epoch_ms(signal["window_end"]),
            "created_time": epoch_ms(signal["created_at"]),
            "data_sources": ["usagewatch lake: API access events"],
            "attacks": attacks(signal),
        },
        observables=_observables(accounts, entities),
        resources=_resources(accounts),
        evidences=[{"name": signal["detection_id"], "data": signal["evidence"]}],
        remediation={"desc": signal["runbook"]},
    )  # fmt: skip
    if signal["immediate"]:
        finding["confidence_id"] = 3  # High: the detection says it opens an incident on its own
    return finding


def _incident_activity(incident: dict[str, Any]) -> int:
    change = incident.get("change")
    if change == "opened" or (change is None and incident["status"] != "resolved"):
        return ACTIVITY_CREATE
    if change == "resolved" or (change is None and incident["status"] == "resolved"):
        return ACTIVITY_CLOSE
    return ACTIVITY_UPDATE


def incident_finding(incident: dict[str, Any]) -> dict[str, Any]:
    """One incident (schemas/incident.schema.json, routed copies included) as a Detection Finding."""
    accounts = incident["account_ids"]
    finding = _base(
        incident, incident["incident_id"], incident["severity"], _incident_activity(incident),
        incident["updated_at"],
    )  # fmt: skip
    finding["metadata"]["correlation_uid"] = incident["incident_id"]
    finding.update(
        message=incident["title"],
        start_time=epoch_ms(incident["first_seen"]),
        end_time=epoch_ms(incident["last_seen"]),
        risk_score=incident["risk_score"],
        count=incident["signal_count"],
        status_id=STATUS_IDS[incident["status"]],
        status=incident["status"].capitalize(),
        finding_info={
            "uid": incident["incident_id"],
            "title": incident["title"],
            "desc": incident["summary"],
            "types": ["incident"],
            "analytic": {"uid": "usagewatch.incidents", "name": "usagewatch incident correlation",
                         "type_id": ANALYTIC_RULE, "type": "Rule"},
            "related_analytics": [
                {"uid": detection_id, "name": detection_id, "type_id": ANALYTIC_RULE, "type": "Rule"}
                for detection_id in incident["detection_ids"]
            ],
            "related_events": [
                {"uid": signal["alert_id"], "type": signal["detection_id"]}
                for signal in incident["evidence"]["top_signals"]
            ],
            "first_seen_time": epoch_ms(incident["first_seen"]),
            "last_seen_time": epoch_ms(incident["last_seen"]),
            "created_time": epoch_ms(incident["created_at"]),
            "modified_time": epoch_ms(incident["updated_at"]),
            "data_sources": ["usagewatch lake: API access events"],
            "attacks": attacks(incident),
        },
        observables=_observables(accounts, incident["entities"]),
        resources=_resources(accounts),
        evidences=[
            {"name": item["detection_id"], "data": item} for item in incident["evidence"]["contributions"]
        ],
        remediation={"desc": incident["runbook"]},
    )  # fmt: skip
    return finding


def finding(document: dict[str, Any]) -> dict[str, Any]:
    """A signal or an incident document as a Detection Finding."""
    return incident_finding(document) if "detection_ids" in document else signal_finding(document)
