"""The seeded traffic generator: determinism, ordering, scenario shapes, traps and malformed input."""

from __future__ import annotations

import csv
import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer

from pipelines.commands.cli import main as usagewatch
from pipelines.detect import enrichment
from pipelines.stream.contracts import ContractViolation, validate_event
from pipelines.traffic import generator
from pipelines.traffic.generator import (
    LABEL_COLUMNS,
    GeneratorConfig,
    generate_events,
    generate_records,
    labels,
)
from pipelines.traffic.records import produce_to_kafka

START = datetime(2026, 11, 27, 8, tzinfo=UTC)
CONFIG = GeneratorConfig(seed=11, start=START, duration=timedelta(minutes=30))
IMPOSSIBLE_KMH = 900  # the usual impossible-travel threshold


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(generate_events(CONFIG))


@pytest.fixture(scope="module")
def events_by_group(events) -> dict[str, dict[str, list[dict]]]:
    """group -> account_id -> that account's events in event-time order."""
    group_of = {row["account_id"]: row["group"] for row in labels(CONFIG)}
    grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for event in sorted(events, key=lambda e: e["event_time"]):
        grouped[group_of[event["account_id"]]][event["account_id"]].append(event)
    return grouped


def _millis(event: dict) -> int:
    return int(datetime.fromisoformat(event["event_time"]).timestamp() * 1000)


def _km(a: dict, b: dict) -> float:
    """Great-circle distance between two events' geo-IP positions."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a["latitude"], a["longitude"], b["latitude"], b["longitude"]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def _max_speed_kmh(account_events: list[dict]) -> float:
    """Fastest apparent movement between consecutive events at different places."""
    fastest = 0.0
    for before, after in zip(account_events, account_events[1:], strict=False):
        km = _km(before, after)
        if km > 0:
            hours = max(_millis(after) - _millis(before), 1) / 3_600_000
            fastest = max(fastest, km / hours)
    return fastest


def _slash24(ip: str) -> str:
    return ip.rsplit(".", 1)[0]


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    first = [record.value for record in generate_records(CONFIG)]
    assert first == [record.value for record in generate_records(CONFIG)]
    assert first != [record.value for record in generate_records(replace(CONFIG, seed=12))]


def test_events_cover_the_time_range_with_unique_ids(events):
    times = [_millis(event) for event in events]
    start_ms = int(START.timestamp() * 1000)
    assert min(times) >= start_ms
    assert max(times) < start_ms + 30 * 60_000
    assert len({event["event_id"] for event in events}) == len(events)


def test_disorder_stays_within_the_bound_and_zero_means_sorted(events):
    latest, worst_lag_ms = 0, 0
    for t_ms in map(_millis, events):
        worst_lag_ms = max(worst_lag_ms, latest - t_ms)
        latest = max(latest, t_ms)
    assert 0 < worst_lag_ms < CONFIG.max_disorder_s * 1000  # shuffled, but boundedly
    in_order = [_millis(event) for event in generate_events(replace(CONFIG, max_disorder_s=0))]
    assert in_order == sorted(in_order)


def test_labels_have_one_row_per_account_covering_every_event(events):
    rows = labels(CONFIG)
    assert all(tuple(row) == LABEL_COLUMNS for row in rows)
    rings = generator.PAYMENT_RING_ACCOUNTS + generator.TEMPLATE_RING_ACCOUNTS
    rings += generator.SYNC_RING_ACCOUNTS + generator.RATE_LIMIT_RING_ACCOUNTS
    assert len({row["account_id"] for row in rows}) == len(rows) == 200 + 40 + 1 + 1 + 1 + 1 + rings
    assert {event["account_id"] for event in events} <= {row["account_id"] for row in rows}
    by_outcome = Counter((row["group"], row["scenario_or_benign"]) for row in rows)
    assert by_outcome[("hydra", "hydra")] == 40
    assert by_outcome[("restricted", "restricted")] == 1
    assert by_outcome[("travel", "travel")] == 1
    assert by_outcome[("corporate_nat", "benign")] == 15
    assert by_outcome[("shared_template_team", "benign")] == 5
    assert sum(count for (_, outcome), count in by_outcome.items() if outcome == "benign") == 200


def test_every_address_is_in_the_country_its_event_states(events):
    # what the bundled GeoIP database (the detection-time enrichment) says of the address
    for ip, country in {(event["source_ip"], event["country"]) for event in events}:
        assert enrichment.lookup(ip)["country"] == country, (ip, country)


def test_hydra_ring_shape(events_by_group):
    ring = [event for account in events_by_group["hydra"].values() for event in account]
    assert len(events_by_group["hydra"]) == CONFIG.hydra_accounts  # every account active: flat 24/7
    ips = {event["source_ip"] for event in ring}
    assert len(ips) <= 3 and len({_slash24(ip) for ip in ips}) == 1
    assert {event["asn_type"] for event in ring} == {"hosting"} and len({event["asn"] for event in ring}) == 1
    assert len({event["payment_fingerprint"] for event in ring}) == 2
    assert 2 <= len({event["prompt_fingerprint"] for event in ring}) <= 3
    assert len({event["user_agent"] for event in ring}) == 1
    orgs = [account[0]["org_id"] for account in events_by_group["hydra"].values() if account[0]["org_id"]]
    assert len(orgs) == len(set(orgs))  # each account its own organisation
    reasoning = sum("reasoning_elicitation" in event["request_tags"] for event in ring)
    assert reasoning > 0.7 * len(ring)
    assert sum(event["output_tokens"] for event in ring) > 5 * sum(event["input_tokens"] for event in ring)


def test_hydra_infrastructure_is_not_shared_with_anyone_else(events_by_group):
    ring_blocks = {_slash24(e["source_ip"]) for account in events_by_group["hydra"].values() for e in account}
    others = [
        e
        for group, accounts in events_by_group.items()
        if group != "hydra"
        for a in accounts.values()
        for e in a
    ]
    assert not ring_blocks & {_slash24(event["source_ip"]) for event in others}


def test_restricted_user_goes_from_iran_direct_to_a_dutch_vpn(events_by_group):
    (account,) = events_by_group["restricted"].values()
    path = [(event["country"], event["asn_type"]) for event in account]
    switch = path.index(("NL", "vpn"))
    assert switch > 0
    assert set(path[:switch]) == {("IR", "residential")} and set(path[switch:]) == {("NL", "vpn")}
    assert account[0]["latitude"] == pytest.approx(35.69, abs=0.01)  # Tehran


def test_travel_scenario_is_impossible_travel(events_by_group):
    (account,) = events_by_group["travel"].values()
    assert {event["country"] for event in account} == {"US", "JP"}
    assert {event["asn_type"] for event in account} == {"residential"}
    assert len({event["api_key_id"] for event in account}) == 1
    assert _max_speed_kmh(account) > IMPOSSIBLE_KMH


def test_benign_travellers_move_at_plausible_speed(events_by_group):
    commuter_moves = [account for account in events_by_group["traveller"].values()
                      if {event["country"] for event in account} == {"FR", "DE"}]  # fmt: skip
    assert len(commuter_moves) == 1
    for account in events_by_group["traveller"].values():
        assert _max_speed_kmh(account) < IMPOSSIBLE_KMH


def test_long_haul_traveller_reaches_new_york_at_flight_speed():
    config = GeneratorConfig(seed=5, accounts=24, start=START, duration=timedelta(hours=14), scenarios=())
    group_of = {row["account_id"]: row["group"] for row in labels(config)}
    trips = defaultdict(list)
    for event in generate_events(config):
        if group_of[event["account_id"]] == "traveller":
            trips[event["account_id"]].append(event)
    flights = [
        sorted(trip, key=_millis) for trip in trips.values() if {e["country"] for e in trip} == {"GB", "US"}
    ]
    assert len(flights) == 1
    assert 300 < _max_speed_kmh(flights[0]) < IMPOSSIBLE_KMH


def test_traps_have_their_suspicious_looking_shapes(events_by_group):
    office = [e for account in events_by_group["corporate_nat"].values() for e in account]
    assert len(events_by_group["corporate_nat"]) > 5
    assert len({e["source_ip"] for e in office}) == 1 and len({e["org_id"] for e in office}) == 1
    assert {e["asn_type"] for e in office} == {"business"}

    (batch,) = events_by_group["batch_user"].values()
    busiest_individual = max(len(account) for account in events_by_group["individual"].values())
    assert len(batch) > 5 * busiest_individual
    assert sum(e["input_tokens"] for e in batch) > 5 * sum(e["output_tokens"] for e in batch)

    (vpn_user,) = events_by_group["vpn_user"].values()
    assert {e["asn_type"] for e in vpn_user} == {"residential", "vpn"}

    team = events_by_group["shared_template_team"]
    assert len({account[0]["org_id"] for account in team.values()}) == 1
    shared = set.intersection(*({e["prompt_fingerprint"] for e in account} for account in team.values()))
    assert len(team) == 5 and len(shared) == 1


def test_benign_individuals_look_nothing_like_the_ring(events_by_group):
    individuals = events_by_group["individual"]
    assert len(individuals) > 100
    everyone = [e for account in individuals.values() for e in account]
    assert {e["asn_type"] for e in everyone} <= {"residential", "mobile"}
    assert sum("reasoning_elicitation" in e["request_tags"] for e in everyone) < 0.05 * len(everyone)
    assert sum(e["input_tokens"] for e in everyone) > sum(e["output_tokens"] for e in everyone)
    assert 0 < sum(e["status_code"] >= 400 for e in everyone) < 0.1 * len(everyone)
    accounts_per_ip = Counter(
        ip for account in individuals.values() for ip in {e["source_ip"] for e in account}
    )
    assert max(accounts_per_ip.values()) == 1


def test_sync_ring_shares_only_its_minutes(events_by_group):
    ring = events_by_group["sync_ring"]
    minutes = [{e["event_time"][:16] for e in account} for account in ring.values()]
    assert len(ring) == generator.SYNC_RING_ACCOUNTS
    assert all(m == minutes[0] for m in minutes) and 3 <= len(minutes[0]) < 0.6 * 30
    assert len({e["asn"] for account in ring.values() for e in account}) > 1
    assert len({account[0]["payment_fingerprint"] for account in ring.values()}) == len(ring)


def test_rate_limit_ring_stays_under_the_limit(events_by_group):
    for account in events_by_group["rate_limit_ring"].values():
        per_minute = Counter(e["event_time"][:16] for e in account)
        assert max(per_minute.values()) <= generator.RATE_LIMIT_PER_MINUTE
        assert min(per_minute.values()) >= 0.75 * generator.RATE_LIMIT_PER_MINUTE


def test_hopper_and_single_bond_rings(events_by_group):
    (hopper,) = events_by_group["hopper"].values()
    assert len({e["country"] for e in hopper}) >= 5 and {e["asn_type"] for e in hopper} == {"residential"}
    payment_ring = events_by_group["payment_ring"].values()
    assert len({account[0]["payment_fingerprint"] for account in payment_ring}) == 1
    assert len({account[0]["org_id"] for account in payment_ring}) == generator.PAYMENT_RING_ACCOUNTS
    (extractor,) = events_by_group["extraction"].values()
    assert sum(e["output_tokens"] for e in extractor) > 5 * sum(e["input_tokens"] for e in extractor)


def test_malformed_records_are_exact_in_number_and_never_valid():
    config = replace(CONFIG, malformed=9)
    records = list(generate_records(config))
    bad = [record for record in records if record.malformed]
    assert len(bad) == 9
    problems = []
    for record in bad:
        try:
            validate_event(json.loads(record.value))
        except json.JSONDecodeError:
            problems.append("invalid_json")
        except ContractViolation as violation:
            problems.append(violation.violations[0])
    assert len(problems) == 9  # none of them passed
    # Kinds rotate invalid JSON, missing field, wrong type, negative tokens.
    assert problems[0::4] == ["invalid_json"] * 3
    assert all("is a required property" in problem for problem in problems[1::4])
    assert all(problem == "input_tokens: 'abc' is not of type 'integer'" for problem in problems[2::4])
    assert all(problem.startswith("output_tokens: -") for problem in problems[3::4])
    # The valid stream is untouched by the mixing-in.
    clean = [record.value for record in generate_records(CONFIG)]
    assert [record.value for record in records if not record.malformed] == clean


def test_config_rejects_too_few_accounts_and_unknown_scenarios():
    with pytest.raises(ValueError, match="accounts must be >= 24"):
        GeneratorConfig(accounts=10, start=START)
    with pytest.raises(ValueError, match="unknown scenarios"):
        GeneratorConfig(scenarios=("hydra", "phishing"), start=START)


def test_cli_writes_jsonl_and_labels(tmp_path, capsys):
    out, label_file = tmp_path / "events.jsonl", tmp_path / "labels.csv"
    code = usagewatch(["generate", "--seed", "11", "--start", "2026-11-27T08:00:00Z", "--duration", "30m",
                 "--malformed", "4", "--out", str(out), "--labels", str(label_file)])  # fmt: skip
    assert code == 0
    lines = out.read_bytes().splitlines()
    expected = [record.value for record in generate_records(replace(CONFIG, malformed=4))]
    assert lines == expected
    with label_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == labels(CONFIG)
    assert f"generated {len(lines) - 4} events + 4 malformed records" in capsys.readouterr().err


def test_cli_refuses_pacing_options_for_files(tmp_path, capsys):
    assert usagewatch(["generate", "--out", str(tmp_path / "x.jsonl"), "--rate", "100"]) == 2
    assert "--rate/--time-compression only apply with --bootstrap" in capsys.readouterr().err


@pytest.mark.integration
def test_produce_to_kafka_delivers_every_record_keyed_by_account(kafka_bootstrap, unique_topic):
    topic = unique_topic(partitions=4)
    config = replace(CONFIG, duration=timedelta(minutes=5), malformed=5)
    records = list(generate_records(config))
    assert produce_to_kafka(records, kafka_bootstrap, topic) == len(records)

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)  # fmt: skip
    received = []
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                received.extend(batch)
    finally:
        consumer.close()
    assert len(received) == len(records)
    assert Counter((m.key, m.value) for m in received) == Counter((r.key.encode(), r.value) for r in records)
    # Keyed by account: one account's events all land in one partition.
    partitions_per_account = defaultdict(set)
    for message in received:
        partitions_per_account[message.key].add(message.partition)
    assert all(len(partitions) == 1 for partitions in partitions_per_account.values())
    assert len({message.partition for message in received}) > 1


def test_privacy_flag_pseudonymises_what_leaves_the_producer(tmp_path, monkeypatch):
    config = tmp_path / "usagewatch.yml"
    config.write_text(
        "privacy:\n  pseudonymise_api_key_id: true\n  pepper_env: UW_TEST_PEPPER\n"
        "  truncate_ip: {ipv4_prefix: 24, ipv6_prefix: 48}\n"
    )
    monkeypatch.setenv("UW_TEST_PEPPER", "a-pepper-of-enough-bytes")
    out = tmp_path / "events.jsonl"
    common = [
        "generate",
        "--seed",
        "4",
        "--accounts",
        "30",
        "--duration",
        "5m",
        "--start",
        "2026-11-02T09:00Z",
    ]
    assert usagewatch([*common, "--out", str(out), "--privacy", "--config", str(config)]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events and all(event["api_key_id"].startswith("pk-") for event in events)
    assert all(event["source_ip"].endswith(".0") for event in events if "." in event["source_ip"])

    monkeypatch.delenv("UW_TEST_PEPPER")
    assert usagewatch([*common, "--out", str(out), "--privacy", "--config", str(config)]) == 2
