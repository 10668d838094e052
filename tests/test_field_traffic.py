"""The field traffic profile: determinism, the contract, labels, each class's and kind's defining shape."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from statistics import median

import pytest

from pipelines.commands import cli
from pipelines.detect import enrichment
from pipelines.infra.paths import SCHEMAS_DIR
from pipelines.stream.contracts import validate_event
from pipelines.traffic import generator
from pipelines.traffic.field_traffic import (
    BENIGN_CLASSES,
    CAMPAIGN_KINDS,
    FieldConfig,
    field_events,
    field_labels,
    field_records,
)
from pipelines.traffic.field_traffic.world import FIELD_PLACES, GEOIP_AS_NAMES, NEIGHBOURS, great_circle_km

START = datetime(2026, 11, 27, 8, tzinfo=UTC)
DEFAULT = FieldConfig(seed=11, start=START)  # six hours, ~1,000 benign accounts
SHORT = replace(DEFAULT, duration=timedelta(minutes=30), benign_accounts=300)
RESTRICTED = {
    row["country_code"] for row in csv.DictReader((SCHEMAS_DIR / "reference/restricted_countries.csv").open())
}


def _millis(event: dict) -> int:
    return int(datetime.fromisoformat(event["event_time"]).timestamp() * 1000)


def _km(a: dict, b: dict) -> float:
    return great_circle_km(a["latitude"], a["longitude"], b["latitude"], b["longitude"])


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(field_events(DEFAULT))


@pytest.fixture(scope="module")
def label_rows() -> list[dict[str, str]]:
    return field_labels(DEFAULT)


@pytest.fixture(scope="module")
def by_group(events, label_rows) -> dict[str, dict[str, list[dict]]]:
    """benign class or campaign instance -> account -> its events in event-time order."""
    group_of = {row["account_id"]: row["group"] for row in label_rows}
    grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for event in sorted(events, key=_millis):
        grouped[group_of[event["account_id"]]][event["account_id"]].append(event)
    return grouped


def _kind(by_group, kind: str) -> dict[str, dict[str, list[dict]]]:
    """Instance id -> account -> events, for every instance of one campaign kind."""
    return {group: accounts for group, accounts in by_group.items() if group.rsplit("-", 1)[0] == kind}


def _all(accounts: dict[str, list[dict]]) -> list[dict]:
    return [event for account in accounts.values() for event in account]


def _hour(event: dict) -> int:
    return (_millis(event) - DEFAULT.start_ms) // 3_600_000


def test_same_seed_gives_the_same_events_and_another_seed_does_not():
    first = [json.dumps(event) for event in field_events(SHORT)]
    assert first == [json.dumps(event) for event in field_events(SHORT)]
    assert field_labels(SHORT) == field_labels(SHORT)
    other = [json.dumps(event) for event in field_events(replace(SHORT, seed=12))]
    assert not set(first) & set(other)


def test_sweeping_one_campaign_leaves_everyone_else_unchanged():
    def outside(config: FieldConfig) -> list[str]:
        ring = {
            row["account_id"] for row in field_labels(config) if row["group"].startswith("lone_extractor")
        }
        return [json.dumps(event) for event in field_events(config) if event["account_id"] not in ring]

    swept = SHORT.with_campaign("lone_extractor", templates=(90, 90), requests_per_hour=(500, 500))
    assert outside(SHORT) == outside(swept)


def test_every_event_satisfies_the_contract_and_uses_the_optional_fields_as_edges_do():
    sample = list(field_events(replace(DEFAULT, duration=timedelta(hours=1), benign_accounts=400)))
    for event in sample:
        validate_event(event)
    share = Counter()
    for event in sample:
        share["no_org"] += event["org_id"] is None
        share["no_geo"] += event["country"] is None
        share["country_only"] += event["country"] is not None and event["latitude"] is None
        share["accuracy"] += "geo_accuracy_km" in event
        share["no_fingerprint"] += event["prompt_fingerprint"] is None
        share["no_payment"] += event["payment_fingerprint"] is None
        share["reasoning"] += "reasoning_elicitation" in event["request_tags"]
        share["429"] += event["status_code"] == 429
    assert all(share[field] > 0 for field in share), share
    assert 0.3 < share["accuracy"] / len(sample) < 0.9
    assert share["no_geo"] / len(sample) < 0.05
    assert {event["asn_type"] for event in sample} == {
        "residential", "business", "hosting", "vpn", "mobile", "unknown", None
    }  # fmt: skip


def test_default_size_disorder_and_time_range(events):
    assert 60_000 <= len(events) <= 120_000
    times = [_millis(event) for event in events]
    assert min(times) >= DEFAULT.start_ms and max(times) < DEFAULT.end_ms
    assert len({event["event_id"] for event in events}) == len(events)
    latest, worst_lag_ms = 0, 0
    for t_ms in times:
        worst_lag_ms, latest = max(worst_lag_ms, latest - t_ms), max(latest, t_ms)
    assert 0 < worst_lag_ms < 5_000


def test_every_sending_account_has_exactly_one_label(events, label_rows):
    assert all(tuple(row) == generator.LABEL_COLUMNS for row in label_rows)
    labelled = [row["account_id"] for row in label_rows]
    assert len(labelled) == len(set(labelled))
    assert set(labelled) == {event["account_id"] for event in events}
    for row in label_rows:
        if row["scenario_or_benign"] == "benign":
            assert row["group"] in BENIGN_CLASSES
        else:
            kind, number = row["group"].rsplit("-", 1)
            assert kind == row["scenario_or_benign"] in CAMPAIGN_KINDS and number.isdigit()
    benign = sum(row["scenario_or_benign"] == "benign" for row in label_rows)
    assert 0.9 * DEFAULT.benign_accounts <= benign <= DEFAULT.benign_accounts


def test_every_benign_class_and_campaign_kind_is_present(label_rows):
    groups = Counter(row["group"] for row in label_rows)
    assert set(BENIGN_CLASSES) <= set(groups)
    instances = Counter(group.rsplit("-", 1)[0] for group in groups if group not in BENIGN_CLASSES)
    assert instances == {kind: params.instances for kind, params in CAMPAIGN_KINDS.items()}


def test_every_address_is_in_the_country_the_geoip_database_places_it(events, label_rows):
    """Events without geo are enriched from the bundled database, so an address must lie where the
    generator means it to: the country the event states, or, for the edge's deliberate neighbour error
    (GeoNoise.neighbour_share, a city across the border of the address's real country), a neighbour."""
    benign = {row["account_id"] for row in label_rows if row["scenario_or_benign"] == "benign"}
    stated = neighbour_errors = 0
    for event in events:
        resolved = enrichment.lookup(event["source_ip"])
        assert resolved is not None and resolved["country"], event["source_ip"]
        country = resolved["country"]
        assert event["account_id"] not in benign or country not in RESTRICTED, (event["source_ip"], country)
        if event["country"] is not None:
            stated += 1
            if event["country"] != country:
                assert event["country"] in NEIGHBOURS.get(country, ()), (event["source_ip"], country, event)
                neighbour_errors += 1
    assert 0 < neighbour_errors < 0.05 * stated


def test_cloud_and_vpn_addresses_are_in_their_providers_networks(events):
    named = {
        event["source_ip"]: GEOIP_AS_NAMES[event["asn"]] for event in events if event["asn"] in GEOIP_AS_NAMES
    }
    agreeing = sum(enrichment.lookup(ip)["asn_name"] == name for ip, name in named.items())
    # the rest: providers the database has no /24 of in that country (a VPN's Tokyo exit, say)
    assert len(named) > 100 and agreeing >= 0.8 * len(named), (agreeing, len(named))


# --- benign classes --------------------------------------------------------------------------------
def test_multi_ip_individuals_are_placed_hundreds_of_km_apart_inside_one_country(by_group):
    accounts = by_group["multi_ip_individual"]
    spread = 0
    for account in accounts.values():
        located = [e for e in account if e["latitude"] is not None]
        spread += any(
            a["country"] == b["country"] and _km(a, b) >= 200 for a in located for b in located[:10]
        )
    assert spread >= 0.4 * len(accounts)


def test_a_cgnat_gateway_serves_many_unrelated_accounts_far_from_their_wifi(by_group):
    accounts_per_ip, orgs_per_ip = defaultdict(set), defaultdict(set)
    for account, account_events in by_group["mobile_cgnat"].items():
        for event in account_events:
            if event["asn_type"] == "mobile":
                accounts_per_ip[event["source_ip"]].add(account)
                orgs_per_ip[event["source_ip"]].add(event["org_id"])
    busiest = max(accounts_per_ip, key=lambda ip: len(accounts_per_ip[ip]))
    assert len(accounts_per_ip[busiest]) >= 20 and len(orgs_per_ip[busiest]) >= 8
    switches = [sum(a["asn_type"] != b["asn_type"] for a, b in zip(es, es[1:], strict=False))
                for es in by_group["mobile_cgnat"].values()]  # fmt: skip
    assert max(switches) >= 3  # Wi-Fi <-> cellular within one session


def test_a_company_egresses_from_several_cities_and_through_its_vpn(by_group):
    per_org = defaultdict(list)
    for event in _all(by_group["corporate_egress"]):
        per_org[event["org_id"]].append(event)
    org_events = max(per_org.values(), key=len)
    business = {(e["latitude"], e["longitude"]) for e in org_events if e["asn_type"] == "business"}
    assert len(business) >= 2
    assert any(e["asn_type"] == "hosting" for e in org_events)
    assert len({e["account_id"] for e in org_events}) >= 10


def test_campus_nat_shares_one_24_across_organisations(by_group):
    per_block = defaultdict(lambda: (set(), set()))
    for event in _all(by_group["campus_nat"]):
        accounts, orgs = per_block[event["source_ip"].rsplit(".", 1)[0]]
        accounts.add(event["account_id"])
        orgs.add(event["org_id"])
    accounts, orgs = max(per_block.values(), key=lambda pair: len(pair[0]))
    assert len(accounts) >= 10 and len(orgs) >= 3 and None in orgs


def test_commuters_cross_into_a_neighbouring_country(by_group):
    crossers = 0
    for account in by_group["cross_border_commuter"].values():
        countries = {e["country"] for e in account if e["country"]}
        crossers += any(b in NEIGHBOURS.get(a, ()) for a in countries for b in countries)
    assert crossers >= 0.5 * len(by_group["cross_border_commuter"])


def test_travellers_fly_once_at_airliner_speed(by_group):
    flights = 0
    for account in by_group["traveller"].values():
        # a country-level answer (accuracy 1,000 km, the country's default point) is no place to fly from
        located = [e for e in account if e["latitude"] is not None and e.get("geo_accuracy_km", 0) < 1000]
        hops = [(a, b) for a, b in zip(located, located[1:], strict=False) if _km(a, b) > 300]
        for a, b in hops:
            assert _km(a, b) / max((_millis(b) - _millis(a)) / 3_600_000, 1e-9) < 1000
        flights += bool(hops)
    assert flights >= 0.3 * len(by_group["traveller"])


def test_vpn_exits_are_shared_and_change_country(by_group):
    users_per_exit, exit_countries = defaultdict(set), defaultdict(set)
    for event in _all(by_group["consumer_vpn"]):
        if event["asn_type"] == "vpn":
            users_per_exit[event["source_ip"]].add(event["account_id"])
            exit_countries[event["account_id"]].add(event["country"])
    assert max(map(len, users_per_exit.values())) >= 3
    assert max(map(len, exit_countries.values())) >= 2


def test_ci_runners_are_shared_by_unrelated_customers(by_group):
    orgs_per_runner = defaultdict(set)
    for event in _all(by_group["cloud_ci"]):
        if event["asn_type"] == "hosting":
            orgs_per_runner[event["source_ip"]].add(event["org_id"] or event["account_id"])
    assert max(map(len, orgs_per_runner.values())) >= 3


def test_a_research_team_is_one_org_reasoning_heavy_with_many_templates(by_group):
    per_org = defaultdict(list)
    for event in _all(by_group["research_team"]):
        per_org[event["org_id"]].append(event)
    team = max(per_org.values(), key=len)
    assert sum("reasoning_elicitation" in e["request_tags"] for e in team) >= 0.25 * len(team)
    assert len({e["prompt_fingerprint"] for e in team}) >= 20


def test_batch_customers_are_flat_around_the_clock_and_output_heavy(by_group):
    for account in by_group["batch_customer"].values():
        per_hour = Counter(_hour(e) for e in account)
        assert len(per_hour) == 6 and min(per_hour.values()) >= 0.6 * max(per_hour.values())
        assert sum(e["output_tokens"] for e in account) > sum(e["input_tokens"] for e in account)
        assert {e["asn_type"] for e in account} <= {"hosting", "unknown", None}
        assert len({e["prompt_fingerprint"] for e in account}) <= 4


def test_a_public_template_is_reused_by_many_unrelated_accounts(events):
    accounts_per_template = defaultdict(set)
    for event in events:
        if event["prompt_fingerprint"]:
            accounts_per_template[event["prompt_fingerprint"]].add(event["account_id"])
    assert max(map(len, accounts_per_template.values())) >= 20


def test_a_startup_shares_one_card_and_bursty_users_hit_the_rate_limit(by_group):
    startup = _all(by_group["startup_shared_card"])
    cards = Counter(e["payment_fingerprint"] for e in startup)
    card, _ = cards.most_common(1)[0]
    assert len({e["account_id"] for e in startup if e["payment_fingerprint"] == card}) >= 5
    assert len({e["org_id"] for e in startup if e["payment_fingerprint"] == card}) == 1
    assert sum(e["status_code"] == 429 for e in _all(by_group["bursty_user"])) >= 50


# --- campaign kinds --------------------------------------------------------------------------------
def test_a_hydra_hides_behind_a_few_exits_that_ordinary_customers_use_too(by_group):
    customers = {e["source_ip"] for e in _all(by_group["proxy_service_customer"])}
    for accounts in _kind(by_group, "hydra_proxy_ring").values():
        ring = _all(accounts)
        exits = {e["source_ip"] for e in ring}
        assert len(exits) <= CAMPAIGN_KINDS["hydra_proxy_ring"].proxy_pool[1]
        assert {e["asn_type"] for e in ring} <= {"hosting", "vpn", "unknown", None}
        assert exits & customers
        assert len(accounts) >= CAMPAIGN_KINDS["hydra_proxy_ring"].accounts[0]


def test_a_residential_proxy_account_rotates_over_many_ips_and_countries(by_group):
    for accounts in _kind(by_group, "residential_proxy_ring").values():
        busiest = max(accounts.values(), key=len)
        assert len({e["source_ip"] for e in busiest}) >= 0.75 * len(busiest) and len(busiest) >= 30
        assert len({e["country"] for e in busiest}) >= 5
        assert Counter(e["asn_type"] for e in busiest).most_common(1)[0][0] == "residential"


def test_a_split_ring_is_cells_with_their_own_infrastructure(by_group):
    for accounts in _kind(by_group, "split_ring").values():
        ips = {account: {e["source_ip"] for e in es} for account, es in accounts.items()}
        cells = []  # connected components of accounts sharing an address
        for account, own in ips.items():
            joined = [cell for cell in cells if cell[1] & own]
            members, addresses = {account}, set(own)
            for cell in joined:
                cells.remove(cell)
                members |= cell[0]
                addresses |= cell[1]
            cells.append((members, addresses))
        assert len(cells) >= 3 and max(len(members) for members, _ in cells) <= 6


def test_low_and_slow_extractors_are_slow_but_never_stop(by_group):
    for accounts in _kind(by_group, "low_and_slow").values():
        rates = [len(es) / 6 for es in accounts.values()]
        assert median(rates) <= 12
        assert len({_hour(e) for e in _all(accounts)}) == 6


def test_many_template_extractors_use_many_templates_and_modest_reasoning(by_group):
    for accounts in _kind(by_group, "many_template_extractor").values():
        ring = _all(accounts)
        assert len({e["prompt_fingerprint"] for e in ring}) >= 30
        assert 0.05 < sum("reasoning_elicitation" in e["request_tags"] for e in ring) / len(ring) < 0.45


def test_a_lone_extractor_harvests_around_the_clock_from_hosting(by_group):
    for accounts in _kind(by_group, "lone_extractor").values():
        (account,) = accounts.values()
        per_hour = Counter(_hour(e) for e in account)
        assert len(per_hour) == 6 and min(per_hour.values()) >= 0.5 * max(per_hour.values())
        assert {e["asn_type"] for e in account} <= {"hosting", "unknown", None}
        assert sum(e["output_tokens"] for e in account) > 3 * sum(e["input_tokens"] for e in account)


def test_a_sync_ring_fires_in_the_same_minutes_from_different_networks(by_group):
    for accounts in _kind(by_group, "sync_ring").values():
        minutes = [{_millis(e) // 60_000 for e in es} for es in accounts.values()]
        first = minutes[0]
        assert all(len(first & other) >= 0.8 * min(len(first), len(other)) for other in minutes[1:])
        assert len({es[0]["source_ip"] for es in accounts.values()}) == len(accounts)
        assert len({es[0]["asn"] for es in accounts.values()}) == len(accounts)


def test_rate_limit_riders_stay_just_under_the_limit(by_group):
    for accounts in _kind(by_group, "rate_limit_riders").values():
        for account in accounts.values():
            per_minute = Counter(_millis(e) // 60_000 for e in account)
            assert max(per_minute.values()) <= generator.RATE_LIMIT_PER_MINUTE
            assert median(per_minute.values()) >= 0.7 * generator.RATE_LIMIT_PER_MINUTE


def test_restricted_region_access_is_served_then_moves_to_exits_elsewhere(by_group):
    for accounts in _kind(by_group, "restricted_region").values():
        for account in accounts.values():
            direct = [e for e in account if e["country"] in RESTRICTED]
            assert any(e["status_code"] == 200 for e in direct)
            later = [e for e in account if _millis(e) > _millis(direct[-1])]
            assert later and all(e["country"] not in RESTRICTED for e in later)
            assert {e["asn_type"] for e in later} & {"vpn", "hosting"}


def test_a_shared_key_alternates_between_far_apart_places(by_group):
    for accounts in _kind(by_group, "key_sharing").values():
        (account,) = accounts.values()
        located = [e for e in account if e["latitude"] is not None]
        far_switches = sum(_km(a, b) > 2000 for a, b in zip(located, located[1:], strict=False))
        assert far_switches >= 4


def test_restricted_and_key_sharing_places_are_real_places():
    assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for _, lat, lon, _ in FIELD_PLACES.values())


# --- command line ----------------------------------------------------------------------------------
def test_cli_writes_field_events_and_labels(tmp_path, capsys):
    out, label_file = tmp_path / "events.jsonl", tmp_path / "labels.csv"
    code = cli.main(["generate", "--profile", "field", "--seed", "11", "--start", "2026-11-27T08:00:00Z",
                 "--duration", "30m", "--accounts", "300", "--malformed", "2", "--out", str(out),
                 "--labels", str(label_file)])  # fmt: skip
    assert code == 0
    lines = out.read_bytes().splitlines()
    assert lines == [record.value for record in field_records(replace(SHORT, malformed=2))]
    with label_file.open(newline="") as handle:
        assert list(csv.DictReader(handle)) == field_labels(SHORT)
    assert f"generated {len(lines) - 2} events + 2 malformed records" in capsys.readouterr().err


def test_cli_field_scenarios_pick_campaign_kinds_and_reject_unknown_ones(tmp_path, capsys):
    label_file = tmp_path / "labels.csv"
    argv = ["generate", "--profile", "field", "--start", "2026-11-27T08:00:00Z", "--duration", "20m",
            "--accounts", "100", "--out", str(tmp_path / "e.jsonl"), "--labels", str(label_file)]  # fmt: skip
    assert cli.main([*argv, "--scenarios", "lone_extractor,key_sharing"]) == 0
    with label_file.open(newline="") as handle:
        kinds = {row["scenario_or_benign"] for row in csv.DictReader(handle)}
    assert kinds == {"benign", "lone_extractor", "key_sharing"}
    assert cli.main([*argv, "--scenarios", "hydra"]) == 2
    assert "unknown campaign kinds ['hydra']" in capsys.readouterr().err
