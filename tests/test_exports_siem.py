"""SIEM exports: signals and incidents as OCSF Detection Findings (validated by py-ocsf-models, the OCSF
1.5.0 models Prowler maintains) and as ECS-shaped JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from lakefixture import read_jsonl
from py_ocsf_models import OCSF_VERSION as MODELS_OCSF_VERSION
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from signalfixture import Engine, ring_signals, signal

from pipelines.commands import cli
from pipelines.exports import ecs, ocsf, siem_document
from pipelines.incidents.alert_state import Delivery
from pipelines.incidents.routing import load_router
from pipelines.infra.config import ConfigError, load_config


def missing_paths(ours: Any, validated: Any, path: str = "") -> list[str]:
    """Paths of `ours` that the validated model dropped or changed: a field OCSF does not define there
    (pydantic ignores unknown keys, so validation alone would not notice a misspelt attribute)."""
    if isinstance(ours, dict) and isinstance(validated, dict):
        if path.endswith(("evidences[].data", "unmapped", ".data")):
            return []  # free-form objects by OCSF's definition
        return [
            found
            for key, value in ours.items()
            for found in (
                missing_paths(value, validated[key], f"{path}.{key}")
                if key in validated
                else [f"{path}.{key}"]
            )
        ]
    if isinstance(ours, list) and isinstance(validated, list) and len(ours) == len(validated):
        return [
            found for a, b in zip(ours, validated, strict=True) for found in missing_paths(a, b, f"{path}[]")
        ]
    return [] if ours == validated else [f"{path}: {ours!r} != {validated!r}"]


def validate_ocsf(finding: dict[str, Any]) -> None:
    model = DetectionFinding.model_validate(finding)
    assert missing_paths(finding, model.model_dump(mode="json", exclude_none=True)) == []


@pytest.fixture
def ring_incident(tmp_path) -> dict[str, Any]:
    run = Engine(tmp_path).run(ring_signals())
    (incident,) = [change for change in run.changes if change["change"] == "opened"]
    return incident


def test_the_models_carry_the_ocsf_version_the_module_declares():
    assert MODELS_OCSF_VERSION == ocsf.OCSF_VERSION
    assert f"OCSF {ocsf.OCSF_VERSION}" in ocsf.__doc__


def test_incident_is_a_valid_detection_finding_with_every_account_entity_and_technique(ring_incident):
    finding = ocsf.finding(ring_incident)
    validate_ocsf(finding)
    assert (finding["class_uid"], finding["category_uid"], finding["type_uid"]) == (2004, 2, 200401)
    assert finding["severity_id"] == 5 and ring_incident["severity"] == "critical"
    assert finding["risk_score"] == ring_incident["risk_score"] and finding["status_id"] == 1
    info = finding["finding_info"]
    assert (info["uid"], info["title"], info["desc"]) == (
        ring_incident["incident_id"], ring_incident["title"], ring_incident["summary"],
    )  # fmt: skip
    assert {a["uid"] for a in info["related_analytics"]} == set(ring_incident["detection_ids"])
    accounts = {o["value"] for o in finding["observables"] if o["name"] == "resources.uid"}
    assert accounts == set(ring_incident["account_ids"]) and len(accounts) == 40
    assert {"203.0.113.7", "card-ab12", "tmpl-77"} <= {o["value"] for o in finding["observables"]}
    ip = next(o for o in finding["observables"] if o["value"] == "203.0.113.7")
    assert (ip["type_id"], ip["name"]) == (2, "src_endpoint.ip")
    # the ring's signals carry proxy (T1090) and account-creation (T1585) techniques
    techniques = {a["technique"]["uid"] for a in info["attacks"]}
    assert {"T1090", "T1585"} <= techniques
    assert all(
        a["technique"]["src_url"].startswith("https://attack.mitre.org/techniques/T") for a in info["attacks"]
    )
    assert finding["start_time"] == ocsf.epoch_ms(ring_incident["first_seen"])
    assert finding["metadata"]["product"]["name"] == "usagewatch"
    assert finding["metadata"]["version"] == "1.5.0"


def test_incident_lifecycle_maps_to_ocsf_activity_and_status(ring_incident):
    resolved = {**ring_incident, "status": "resolved", "change": "resolved"}
    acknowledged = {**ring_incident, "status": "acknowledged", "change": "acknowledged"}
    for document, activity, status in ((resolved, 3, 4), (acknowledged, 2, 2)):
        finding = ocsf.finding(document)
        validate_ocsf(finding)
        assert (finding["activity_id"], finding["type_uid"], finding["status_id"]) == (
            activity, 200400 + activity, status,
        )  # fmt: skip


def test_signal_is_a_valid_detection_finding_with_evidence_window_and_atlas_technique():
    extraction = signal("extraction_profile", "acct-1", ["acct-1"], 4, 50)
    extraction["evidence"] = {"output_input_ratio": 7.5, "risk_factors": {"ratio": 30}}
    finding = ocsf.finding(extraction)
    validate_ocsf(finding)
    assert finding["finding_info"]["analytic"]["uid"] == "extraction_profile"
    assert finding["evidences"] == [{"name": "extraction_profile", "data": extraction["evidence"]}]
    assert finding["start_time"] == ocsf.epoch_ms(extraction["window_start"])
    assert finding["end_time"] - finding["start_time"] == 3_600_000
    # model extraction through the inference API: an ATLAS id, which OCSF 1.5 has no attribute for
    assert [t["uid"] for t in finding["unmapped"]["atlas_techniques"]] == ["AML.T0024.002"]
    assert finding["finding_info"]["attacks"][0]["technique"]["uid"] == "T1119"


def test_a_misnamed_attribute_fails_the_ocsf_check(ring_incident):
    finding = ocsf.finding(ring_incident)
    finding["finding_info"]["titel"] = "typo"
    with pytest.raises(AssertionError):
        validate_ocsf(finding)
    finding = ocsf.finding(ring_incident)
    finding["severity_id"] = 7  # not in OCSF's enumeration
    with pytest.raises(ValueError):
        validate_ocsf(finding)


# ECS 8.x allowed values (https://www.elastic.co/guide/en/ecs/current/ecs-allowed-values-event-*.html)
ECS_EVENT_KINDS = {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
ECS_EVENT_CATEGORIES = {"intrusion_detection", "threat", "network", "authentication", "web", "iam"}
ECS_EVENT_TYPES = {"indicator", "info", "access", "denied", "allowed"}
# top-level ECS field sets this export may use, plus its own namespace
ECS_TOP_LEVEL = {
    "@timestamp",
    "ecs",
    "event",
    "observer",
    "threat",
    "rule",
    "related",
    "message",
    "user",
    "source",
}


def check_ecs(document: dict[str, Any]) -> None:
    assert set(document) - ECS_TOP_LEVEL == {"usagewatch"}
    event = document["event"]
    assert event["kind"] in ECS_EVENT_KINDS
    assert set(event["category"]) <= ECS_EVENT_CATEGORIES and set(event["type"]) <= ECS_EVENT_TYPES
    assert isinstance(event["severity"], int) and isinstance(event["risk_score"], float)
    for technique in document.get("threat", {}).get("technique", []):
        assert technique["id"].startswith("T") and technique["reference"].startswith("https://")
    dt.datetime.fromisoformat(document["@timestamp"])


def test_incident_in_ecs_shape(ring_incident):
    document = ecs.document(ring_incident)
    check_ecs(document)
    assert document["event"]["dataset"] == "usagewatch.incident"
    assert document["event"]["id"] == ring_incident["incident_id"]
    assert document["event"]["action"] == "opened" and document["event"]["severity"] == 5
    assert set(document["related"]["user"]) == set(ring_incident["account_ids"])
    assert document["related"]["ip"] == ["203.0.113.7"]
    assert set(document["related"]["hash"]) == {"card-ab12", "tmpl-77"}
    proxy = next(t for t in document["threat"]["technique"] if t["id"] == "T1090")
    assert proxy["reference"] == "https://attack.mitre.org/techniques/T1090/"


def test_signal_in_ecs_shape():
    hosting = signal("shared_hosting_infrastructure", "203.0.113.7", ["a", "b"], 1, 40)
    document = ecs.document(hosting)
    check_ecs(document)
    assert document["source"] == {"ip": "203.0.113.7"} and document["related"]["user"] == ["a", "b"]
    assert document["rule"]["id"] == "shared_hosting_infrastructure"
    account = ecs.document(signal("extraction_profile", "acct-1", ["acct-1"], 4, 50))
    check_ecs(account)
    assert account["user"] == {"id": "acct-1"}
    assert account["usagewatch"]["atlas"][0]["id"] == "AML.T0024.002"


def test_siem_document_dispatches_on_format(ring_incident):
    assert siem_document(ring_incident, "ocsf")["class_uid"] == 2004
    assert siem_document(ring_incident, "ecs")["ecs"]["version"] == ecs.ECS_VERSION


OCSF_SINK = "    - {name: siem, type: jsonl, path: siem.jsonl, format: ocsf}\n"
ECS_SINK = "    - {name: elastic, type: jsonl, path: elastic.jsonl, format: ecs}\n"


def test_jsonl_sinks_deliver_ocsf_and_ecs_documents(tmp_path):
    engine = Engine(tmp_path, sinks=OCSF_SINK + ECS_SINK)
    run = engine.run(ring_signals())
    (opened,) = run.changes
    (finding,) = read_jsonl(tmp_path / "siem.jsonl")
    validate_ocsf(finding)
    assert finding == ocsf.finding(opened)
    (document,) = read_jsonl(tmp_path / "elastic.jsonl")
    check_ecs(document)
    assert document["event"]["id"] == opened["incident_id"] and document["event"]["action"] == "opened"
    # a kill between writing and marking delivered sends the same copy again: the guard compares the
    # rendered line, so the file still holds it once
    sink = engine.router.sinks["siem"]
    sink.send(Delivery(1, opened["incident_id"], "siem", "opened", "trigger", 1, opened))
    assert len(read_jsonl(tmp_path / "siem.jsonl")) == 1


def test_an_unknown_sink_format_fails_naming_file_and_line(tmp_path):
    (tmp_path / "usagewatch.yml").write_text(
        "routing:\n  sinks:\n    - name: siem\n      type: jsonl\n      path: siem.jsonl\n      format: cef\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"usagewatch.yml:6: routing sink 'siem' \(sinks\[0\]\): format must be one of ocsf, ecs",
    ):
        load_router(load_config(str(tmp_path / "usagewatch.yml")))


def test_export_commands_write_ocsf_ecs_and_refuse_an_unknown_incident(tmp_path, capsys):
    engine = Engine(tmp_path)
    (opened,) = engine.run(ring_signals()).changes
    config = str(engine.config.path)
    out = tmp_path / "finding.json"
    assert (
        cli.main(
            [
                "incidents",
                "export",
                opened["incident_id"][:8],
                "--ocsf",
                "--config",
                config,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    finding = json.loads(out.read_text())
    validate_ocsf(finding)
    assert finding["finding_info"]["uid"] == opened["incident_id"]
    capsys.readouterr()
    assert cli.main(["signals", "export", "--ecs", "--config", config]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(ring_signals()) and all(
        line["event"]["dataset"] == "usagewatch.signal" for line in lines
    )
    for line in lines:
        check_ecs(line)
    assert cli.main(["signals", "export", "--ocsf", "--severity", "high", "--config", config]) == 0
    findings = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert findings and all(f["severity_id"] >= 4 for f in findings)
    for found in findings:
        validate_ocsf(found)
    assert cli.main(["incidents", "export", "ffffffffff", "--ecs", "--config", config]) == 1
    assert "error:" in capsys.readouterr().err


def test_technique_names_tactics_and_version_come_from_the_bundled_list():
    document = {"detection_id": "x", "techniques": {"attack": ["T1090.002"], "atlas": ["AML.T0024.002"]}}
    (attack,) = ocsf.attacks(document)
    assert attack["technique"] == {
        "uid": "T1090", "name": "Proxy", "src_url": "https://attack.mitre.org/techniques/T1090/",
    }  # fmt: skip
    assert attack["sub_technique"] == {
        "uid": "T1090.002", "name": "External Proxy", "src_url": "https://attack.mitre.org/techniques/T1090/002/",
    }  # fmt: skip
    assert attack["tactic"] == {"uid": "TA0011", "name": "Command and Control"}
    assert attack["version"] == "18.1"  # ATT&CK Enterprise v18.1, schemas/reference/techniques.json
    threat = ecs.threat(document)
    assert threat["tactic"] == {"id": ["TA0011"], "name": ["Command and Control"]}
    assert threat["technique"][0]["subtechnique"][0]["id"] == "T1090.002"
    extraction = signal("extraction_profile", "a", ["a"], 1, 50) | {"techniques": document["techniques"]}
    assert ecs.document(extraction)["usagewatch"]["atlas"][0]["name"] == "Extract AI Model"
    finding = ocsf.finding(extraction)
    assert finding["unmapped"]["atlas_techniques"][0]["name"] == "Extract AI Model"
    validate_ocsf(finding)


@pytest.mark.integration
def test_kafka_sink_with_format_ocsf_publishes_detection_findings(tmp_path, kafka_bootstrap, unique_topic):
    from kafka import KafkaConsumer

    topic = unique_topic()
    bus = f"topic: {topic}, bootstrap: '{kafka_bootstrap}'"
    sink = f"    - {{name: siem, type: kafka, format: ocsf, {bus}}}\n"
    (opened,) = Engine(tmp_path, sink).run(ring_signals()).changes
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=30_000
    )
    try:
        message = next(iter(consumer))
    finally:
        consumer.close()
    finding = json.loads(message.value)
    validate_ocsf(finding)
    assert message.key.decode() == opened["incident_id"] == finding["finding_info"]["uid"]
    assert finding == ocsf.finding(opened)
