"""Signals and incidents as ECS-shaped JSON (Elastic Common Schema 8.x field names), for Elasticsearch,
OpenSearch and SIEMs that speak ECS (`format: ecs` on the jsonl/kafka routing sinks, or
`usagewatch incidents|signals export --ecs`).

- event: kind `alert` (our incidents and signals are findings, not raw events), category
  `intrusion_detection`, type `indicator`, module `usagewatch`, dataset `usagewatch.incident` or
  `usagewatch.signal`, id, severity (info 1 .. critical 5, so it sorts), risk_score, start/end = event
  time, created; `@timestamp` = when the finding was made or last changed.
- rule: the detection (id, name, ruleset usagewatch); an incident is the correlation rule.
- threat: framework MITRE ATT&CK, technique[] (id, name, reference), technique.subtechnique[] and
  tactic (id, name);
  ECS has one framework per document, so MITRE ATLAS ids go under usagewatch.atlas.
- related: ip (IPs), user (accounts), hash (payment and prompt-template fingerprints) for pivots;
  source.ip / source.as.number when the finding is about one IP or ASN; user.id for one account.
- usagewatch: what ECS has no field for (entities, evidence, runbook, status, accounts).
"""

from __future__ import annotations

from typing import Any

from pipelines.exports.techniques import attack_tactics, technique_name, technique_url, techniques_of

ECS_VERSION = "8.11.0"
SEVERITY_NUMBERS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def threat(document: dict[str, Any]) -> dict[str, Any] | None:
    """ECS threat.* for the document's ATT&CK techniques (sub-techniques nested under their parent)."""
    techniques: dict[str, dict[str, Any]] = {}
    for technique_id in techniques_of(document)["attack"]:
        parent = technique_id.split(".")[0]
        entry = techniques.setdefault(
            parent,
            {
                "id": parent,
                "name": technique_name(parent) or parent,
                "reference": technique_url("attack", parent),
            },
        )
        if parent != technique_id:
            entry.setdefault("subtechnique", []).append(
                {"id": technique_id, "name": technique_name(technique_id) or technique_id,
                 "reference": technique_url("attack", technique_id)}
            )  # fmt: skip
    if not techniques:
        return None
    found: dict[str, Any] = {"framework": "MITRE ATT&CK", "technique": list(techniques.values())}
    tactics = sorted(
        {
            tactic
            for technique_id in techniques_of(document)["attack"]
            for tactic in attack_tactics(technique_id)
        },
        key=lambda t: t[1],
    )
    if tactics:
        found["tactic"] = {"name": [name for _, name in tactics], "id": [uid for uid, _ in tactics if uid]}
    return found


def _related(accounts: list[str], entities: list[dict[str, str]]) -> dict[str, list[str]]:
    related = {
        "user": sorted(accounts),
        "ip": sorted({entity["id"] for entity in entities if entity["type"] == "ip"}),
        "hash": sorted({entity["id"] for entity in entities if entity["type"] in ("payment", "template")}),
    }
    return {key: values for key, values in related.items() if values}


def _common(document: dict[str, Any], dataset: str, uid: str, timestamp: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "@timestamp": timestamp,
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["indicator"],
            "module": "usagewatch",
            "dataset": dataset,
            "id": uid,
            "severity": SEVERITY_NUMBERS[document["severity"]],
            "risk_score": float(document["risk_score"]),
        },
        "observer": {"vendor": "usagewatch", "product": "usagewatch", "type": "ids"},
    }
    found = threat(document)
    if found:
        result["threat"] = found
    atlas = techniques_of(document)["atlas"]
    result["usagewatch"] = {"severity": document["severity"]}
    if atlas:
        result["usagewatch"]["atlas"] = [
            {"id": technique_id, "name": technique_name(technique_id) or technique_id,
             "reference": technique_url("atlas", technique_id)}
            for technique_id in atlas
        ]  # fmt: skip
    return result


def signal_document(signal: dict[str, Any]) -> dict[str, Any]:
    """One signal (schemas/alert.schema.json) in ECS shape."""
    result = _common(signal, "usagewatch.signal", signal["alert_id"], signal["created_at"])
    kind, identifier = signal["entity_type"], signal["entity_id"]
    entity_type = {"prompt_fingerprint": "template"}.get(kind, kind)
    entities = [] if kind == "account" else [{"type": entity_type, "id": identifier}]
    result["event"].update(
        start=signal["window_start"], end=signal["window_end"], created=signal["created_at"],
        reason=signal["title"],
    )  # fmt: skip
    result["message"] = f"{signal['title']}: {kind} {identifier} ({len(signal['account_ids'])} account(s))"
    result["rule"] = {"id": signal["detection_id"], "name": signal["title"], "ruleset": "usagewatch"}
    result["related"] = _related(signal["account_ids"], entities)
    if kind == "account":
        result["user"] = {"id": identifier}
    elif kind == "ip" and "/" not in identifier:
        result["source"] = {"ip": identifier}
    elif kind == "asn" and identifier.upper().removeprefix("AS").isdigit():
        result["source"] = {"as": {"number": int(identifier.upper().removeprefix("AS"))}}
    result["usagewatch"].update(
        entity={"type": kind, "id": identifier}, account_ids=signal["account_ids"],
        evidence=signal["evidence"],
        runbook=signal["runbook"], dedup_key=signal["dedup_key"], immediate=signal["immediate"],
    )  # fmt: skip
    return result


def incident_document(incident: dict[str, Any]) -> dict[str, Any]:
    """One incident (routed copies included) in ECS shape."""
    result = _common(incident, "usagewatch.incident", incident["incident_id"], incident["updated_at"])
    result["event"].update(
        start=incident["first_seen"], end=incident["last_seen"], created=incident["created_at"],
        reason=incident["title"],
    )  # fmt: skip
    if "change" in incident:
        result["event"]["action"] = incident["change"]
    result["message"] = incident["summary"]
    result["rule"] = {
        "id": "usagewatch.incidents",
        "name": "usagewatch incident correlation",
        "ruleset": "usagewatch",
        "description": "Detections: " + ", ".join(incident["detection_ids"]),
    }
    result["related"] = _related(incident["account_ids"], incident["entities"])
    result["usagewatch"].update(
        title=incident["title"], status=incident["status"], account_ids=incident["account_ids"],
        entities=incident["entities"], detection_ids=incident["detection_ids"],
        signal_count=incident["signal_count"], evidence=incident["evidence"], runbook=incident["runbook"],
    )  # fmt: skip
    return result


def document(source: dict[str, Any]) -> dict[str, Any]:
    """A signal or an incident document in ECS shape."""
    return incident_document(source) if "detection_ids" in source else signal_document(source)
