"""Every detection under sql/detections, run on its fixture lakes, yields exactly the expected alerts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from lakefixture import read_jsonl, write_events

from pipelines.detect import catalog
from pipelines.detect.detections import (
    DETECTIONS_DIR,
    DetectionError,
    load_detection,
    load_detections,
    restrict_to_time_range,
    rule_folders,
    run_detection,
    run_detections,
    shared_scan,
)
from pipelines.lake.analyst import open_lake
from pipelines.stream.contracts import validate_alert, validate_event

NOW = catalog.FIXTURE_NOW
DETECTION_IDS = [folder.name for folder in rule_folders()]


def run_on_fixture(tmp_path: Path, events: list[dict], detection_id: str) -> list[dict]:
    """One detection's signals over a lake built from these events, as `detections test` builds it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    events_file = tmp_path / "fixture-events.jsonl"
    events_file.write_text("".join(json.dumps(event) + "\n" for event in events))
    return catalog.lake_signals(load_detection(DETECTIONS_DIR / detection_id), [events_file], tmp_path)


def fixture_events(detection_id: str, kind: str) -> list[dict]:
    files = catalog.fixture_files(DETECTIONS_DIR / detection_id, kind)
    return [event for path in files for event in read_jsonl(path)]


@pytest.mark.parametrize("kind", catalog.FIXTURE_KINDS)
@pytest.mark.parametrize("detection_id", DETECTION_IDS)
def test_detection_fixture(detection_id, kind):
    """What `usagewatch detections test` runs: expected.yml exactly, positives yield something, negatives
    only context, every signal's evidence valid against the rule's evidence.schema.json."""
    for event in fixture_events(detection_id, kind):
        validate_event(event)  # fixtures are real contract events, not a private dialect

    result = catalog.run_fixture(load_detection(DETECTIONS_DIR / detection_id), kind)

    assert result.problems == [], result.describe()
    assert result.found == catalog.expected_signals(DETECTIONS_DIR / detection_id, kind)


def test_an_evidence_key_has_one_type_in_every_detection():
    assert catalog.evidence_type_clashes(rule_folders()) == []
    # the case that used to differ: AS numbers and AS names are both asn_key text
    assert catalog.evidence_types(rule_folders())[("asns",)] == {
        "shared_hosting_infrastructure": "array<string>",
        "shared_subnet_infrastructure": "array<string>",
    }


def test_evidence_types_clash_when_one_rule_changes_a_key(tmp_path):
    for rule in ("shared_hosting_infrastructure", "shared_subnet_infrastructure"):
        (tmp_path / rule).mkdir()
        (tmp_path / rule / "evidence.schema.json").write_bytes(
            (DETECTIONS_DIR / rule / "evidence.schema.json").read_bytes()
        )
    numbered = tmp_path / "shared_subnet_infrastructure" / "evidence.schema.json"
    numbered.write_text(
        numbered.read_text().replace(
            '"asns": {"type": "array", "items": {"type": "string"}}',
            '"asns": {"type": "array", "items": {"type": "integer"}}',
        )
    )
    (clash,) = catalog.evidence_type_clashes(sorted(tmp_path.iterdir()))
    assert clash.startswith("evidence key asns has different types")


def test_extraction_profile_shows_each_contribution(tmp_path):
    alerts = run_on_fixture(tmp_path, fixture_events("extraction_profile", "positive"), "extraction_profile")
    harvester = next(alert for alert in alerts if alert["entity_id"] == "acct-lone-harvester")
    factors = harvester["evidence"]["risk_factors"]
    assert set(factors) == {
        "output_input_ratio", "reasoning_elicitation", "output_volume", "flat_24_7", "hosting_networks",
        "prompt_breadth", "history_jump",
    }  # fmt: skip
    assert harvester["risk_score"] == min(100, round(sum(factors.values())))
    assert harvester["evidence"]["distinct_templates"] == 40  # far beyond the old cut-off of 5
    assert factors["hosting_networks"] > 0 and factors["flat_24_7"] > 0
    # 40 templates around the clock from a server: breadth carries it to a signal that pages on its own.
    assert factors["prompt_breadth"] > 20 and harvester["risk_score"] >= 100


def test_ring_clustering_finds_a_rotating_residential_ring_whole(tmp_path):
    events = read_jsonl(DETECTIONS_DIR / "ring_clustering" / "positive-rotating-residential.jsonl")
    (ring,) = run_on_fixture(tmp_path, events, "ring_clustering")
    members = [f"acct-rotating-{group}-{member}" for group in range(3) for member in range(4)]
    assert ring["account_ids"] == members
    assert ring["evidence"]["shared_ips"] == 0 and ring["evidence"]["shared_payments"] == 0
    assert set(ring["evidence"]["family_concentration"]) == {"client", "template", "timing"}
    assert ring["risk_score"] >= 80


def test_alert_ids_are_stable_across_runs(tmp_path):
    events = read_jsonl(DETECTIONS_DIR / "shared_hosting_infrastructure" / "positive.jsonl")
    first = run_on_fixture(tmp_path / "a", events, "shared_hosting_infrastructure")
    second = run_on_fixture(tmp_path / "b", events, "shared_hosting_infrastructure")
    assert [alert["alert_id"] for alert in first] == [alert["alert_id"] for alert in second]
    assert len({alert["alert_id"] for alert in first}) == len(first)


def test_shared_hosting_alert_lists_every_ring_account(tmp_path):
    events = read_jsonl(DETECTIONS_DIR / "shared_hosting_infrastructure" / "positive.jsonl")
    alerts = run_on_fixture(tmp_path, events, "shared_hosting_infrastructure")
    ring = next(alert for alert in alerts if alert["entity_id"] == "203.0.113.10")
    assert ring["account_ids"] == [f"acct-ring-{i:02d}" for i in range(12)]
    assert ring["evidence"]["distinct_orgs"] == 12  # no org: each account is its own org
    assert ring["evidence"]["distinct_prompt_fingerprints"] == 1
    assert ring["dedup_key"] == "shared_hosting_infrastructure:203.0.113.10"
    assert ring["window_start"] == "2026-03-01T10:00:00.000Z"
    assert ring["window_end"] == "2026-03-01T11:00:00.000Z"
    assert ring["runbook"].startswith("Investigate: ") and " Respond: " in ring["runbook"]


def test_shared_hosting_names_the_coordinated_accounts_not_the_proxy_services_customers(tmp_path):
    events = read_jsonl(
        DETECTIONS_DIR / "shared_hosting_infrastructure" / "positive-field-proxy-service.jsonl"
    )
    signals = run_on_fixture(tmp_path, events, "shared_hosting_infrastructure")
    named = {account for signal in signals for account in signal["account_ids"]}
    assert named and all(account.startswith("acct-hydra-proxy-ring-") for account in named)
    assert all(signal["evidence"]["bystander_accounts"] > 0 for signal in signals)
    for signal in signals:
        assert signal["risk_score"] == round(sum(signal["evidence"]["risk_factors"].values()))


def test_restricted_region_served_access_is_immediate_and_isolated_geolocation_is_not(tmp_path):
    served = run_on_fixture(tmp_path / "p", fixture_events("restricted_region_access", "positive"),
                            "restricted_region_access")  # fmt: skip
    assert served and all(signal["immediate"] for signal in served)
    noise = run_on_fixture(tmp_path / "n", fixture_events("restricted_region_access", "negative"),
                           "restricted_region_access")  # fmt: skip
    (isolated,) = noise
    assert isolated["evidence"]["isolated_geolocation"] and not isolated["immediate"]


def test_impossible_travel_evidence(tmp_path):
    events = fixture_events("impossible_travel", "positive")
    alerts = {alert["entity_id"]: alert for alert in run_on_fixture(tmp_path, events, "impossible_travel")}
    hop = alerts["acct-hopper"]["evidence"]
    assert 5500 < hop["distance_km"] < 5650  # New York - London great circle is ~5,570 km
    # speed counts only the distance beyond both (default 50 km) accuracy radii; the hop took 30 min
    assert hop["excess_km"] == pytest.approx(hop["distance_km"] - 100, abs=0.2)
    assert hop["speed_kmh"] == pytest.approx(hop["excess_km"] * 2, rel=1e-3)
    assert hop["key_sharing_suspected"] is False
    simultaneous = alerts["acct-simultaneous"]["evidence"]
    assert simultaneous["simultaneous"] is True
    assert simultaneous["speed_kmh"] is None
    assert simultaneous["elapsed_seconds"] == 0
    # one move is travel; New York <-> Singapore six times over is one key used in two places
    assert alerts["acct-hopper"]["risk_score"] < 60
    sharer = alerts["acct-key-sharer"]
    assert sharer["evidence"]["key_sharing_suspected"] is True
    assert sharer["evidence"]["alternating_hops"] == 5
    assert sharer["risk_score"] >= 60


def test_impossible_travel_accuracy_radius_absorbs_coarse_geoip(tmp_path):
    events = [
        event for event in read_jsonl(DETECTIONS_DIR / "impossible_travel" / "negative-geoip-noise.jsonl")
        if event["account_id"] == "acct-coarse-geo"
    ]  # fmt: skip
    assert run_on_fixture(tmp_path / "wide", events, "impossible_travel") == []
    # the same hops without the accuracy radius alternate Paris <-> London faster than a plane
    precise = [{k: v for k, v in event.items() if k != "geo_accuracy_km"} for event in events]
    alerts = run_on_fixture(tmp_path / "precise", precise, "impossible_travel")
    assert [alert["evidence"]["key_sharing_suspected"] for alert in alerts] == [True]


def test_restricted_region_evidence(tmp_path):
    events = read_jsonl(DETECTIONS_DIR / "restricted_region_access" / "positive.jsonl")
    alerts = {
        alert["entity_id"]: alert for alert in run_on_fixture(tmp_path, events, "restricted_region_access")
    }
    plain = alerts["acct-ir-1"]["evidence"]
    assert plain["restricted_requests"] == 3
    assert plain["restricted_source_ips"] == ["5.160.1.10", "5.160.1.11"]
    assert plain["first_seen"] == "2026-03-01T10:05:00.000Z"
    assert plain["bases"] == ["export-control"]
    assert plain["evasion_detected"] is False
    evader = alerts["acct-kp-evader"]["evidence"]
    assert evader["evasion_detected"] is True
    assert evader["evasion_exit_ips"] == ["198.51.100.20", "198.51.100.21"]
    assert alerts["acct-ru-2"]["evidence"]["bases"] == ["provider-policy"]


def test_every_detection_runs_on_an_empty_lake(tmp_path):
    con = open_lake(tmp_path)
    try:
        assert run_detections(con, now=NOW) == []
    finally:
        con.close()


def test_detection_sql_error_names_the_sql_file(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "query.sql").write_text(
        "select entity_id from no_such_table where 1 = $threshold\n"
    )
    metadata = (DETECTIONS_DIR / "impossible_travel" / "rule.yml").read_text()
    metadata = metadata.replace("id: impossible_travel", "id: broken")
    parameters_at = metadata.index("parameters:")
    metadata = metadata[:parameters_at] + "parameters:\n  threshold: {value: 1, description: anything}\n"
    (tmp_path / "broken" / "rule.yml").write_text(metadata)
    detections = load_detections(tmp_path)
    con = open_lake(tmp_path / "lake")
    try:
        with pytest.raises(DetectionError, match=r"broken/query\.sql: .*no_such_table"):
            run_detections(con, detections=detections, now=NOW)
    finally:
        con.close()


def test_concurrent_suite_equals_one_detection_after_the_other_within_a_time_range(tmp_path):
    """run_detections runs detections two at a time on cursors, which must see the connection's time
    range (temp views) as the connection does, and hand back the signals in catalogue order."""
    events = [
        *fixture_events("impossible_travel", "positive"),
        *fixture_events("restricted_region_access", "positive"),
    ]
    write_events(tmp_path / "lake", events)
    detections = [detection for detection in load_detections() if detection.enabled]
    con = open_lake(tmp_path / "lake")
    try:
        everything = run_detections(con, now=NOW, detections=detections)
        restrict_to_time_range(con, None, dt.datetime(2026, 3, 1, 10, 40, tzinfo=dt.UTC))
        concurrent = run_detections(con, now=NOW, detections=detections)
        with shared_scan(con, detections):
            one_after_the_other = [
                signal for detection in detections for signal in run_detection(con, detection, NOW)
            ]
    finally:
        con.close()
    assert concurrent == one_after_the_other
    assert concurrent and concurrent != everything  # the range took signals away in the cursors too
    order = [detection.id for detection in detections]
    assert [order.index(signal["detection_id"]) for signal in concurrent] == sorted(
        order.index(signal["detection_id"]) for signal in concurrent
    )


def test_concurrent_suite_raises_the_first_failing_detection_in_catalogue_order(tmp_path):
    metadata = (DETECTIONS_DIR / "impossible_travel" / "rule.yml").read_text()
    parameters_at = metadata.index("parameters:")
    # the first fails late (after counting 50M rows), the second at once: the first is raised all the same
    queries = {
        "a_broken": "select error('a fails late') as entity_id "
        "from (select count(*) as n from range(50000000)) where 1 = $threshold",
        "b_broken": "select entity_id from no_such_table_b where 1 = $threshold",
        "c_fine": "select 'x' as entity_id from range(1) where 1 = $threshold",
    }
    for name, sql in queries.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "query.sql").write_text(sql + "\n")
        rule = metadata[:parameters_at].replace("id: impossible_travel", f"id: {name}")
        (tmp_path / name / "rule.yml").write_text(
            rule + "parameters:\n  threshold: {value: 1, description: anything}\n"
        )
    con = open_lake(tmp_path / "lake")
    try:
        with pytest.raises(DetectionError, match=r"a_broken/query\.sql: .*a fails late"):
            run_detections(con, detections=load_detections(tmp_path), now=NOW)
    finally:
        con.close()


def test_detect_command_writes_jsonl_and_summary(tmp_path, capsys):
    import argparse

    from pipelines.commands import detect as detections

    events = read_jsonl(DETECTIONS_DIR / "impossible_travel" / "positive.jsonl")
    write_events(tmp_path / "lake", events)
    parser = argparse.ArgumentParser()
    detections.add_parser(parser.add_subparsers())
    output = tmp_path / "out" / "signals.jsonl"
    args = parser.parse_args(["detect", "--lake", str(tmp_path / "lake"), "--signals", str(output)])

    assert args.func(args) == 0

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(alert["entity_id"] for alert in lines) == ["acct-hopper", "acct-simultaneous"]
    for alert in lines:
        validate_alert(alert)
    printed = capsys.readouterr().out
    assert "impossible_travel" in printed and "restricted_region_access" in printed
    assert "signals: " in printed and f"2 signal(s) written to {output}" in printed
