"""Indicator sharing: a confirmed incident as a STIX 2.1 bundle, a peer's bundle imported whole or not at
all, and the round trip (export -> import into a fresh state -> the campaign's traffic at the peer raises
the strong link)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import stix2
from lakefixture import read_jsonl, write_events

from pipelines.commands import cli
from pipelines.detect.detections import DETECTIONS_DIR
from pipelines.exports import stix
from pipelines.exports.indicators import TABLE
from pipelines.incidents.alert_state import AlertStore

# six accounts of six organisations paid by one card (the shared_payment_fingerprint positive fixture)
PAYMENT_RING = read_jsonl(DETECTIONS_DIR / "shared_payment_fingerprint" / "positive.jsonl")
BENIGN = read_jsonl(DETECTIONS_DIR / "benign_traps.jsonl")
NOW = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def provider(folder: Path, events: list[dict]) -> Path:
    """A provider's folder: its lake of these events and a configuration (state, a JSONL sink)."""
    folder.mkdir(parents=True)
    write_events(folder / "lake", events)
    config = folder / "usagewatch.yml"
    config.write_text(
        "state: {path: state.duckdb, audit_log: audit.jsonl}\n"
        "routing:\n  sinks:\n    - {name: file, type: jsonl, path: routed.jsonl}\n"
        "incidents:\n  open_threshold: 40\n"  # the card alone (45) is a case here
    )
    return config


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    print(captured.err)  # shown when a test fails
    return code, captured.out, captured.err


def incidents_of(capsys, config: Path) -> list[dict]:
    code, out, _ = run(capsys, "incidents", "list", "--json", "--config", str(config))
    assert code == 0
    return json.loads(out)


def shared_signals(config: Path) -> list[dict]:
    with AlertStore.open(config.parent / "state.duckdb") as store:
        return [json.loads(r["alert"]) for r in store.list_alerts(detection_id="shared_indicator_match")]


def exported_ring_bundle(tmp_path: Path, capsys) -> tuple[Path, dict]:
    """Provider A detects the payment ring, on-call acknowledges it, A exports it with its lake."""
    config = provider(tmp_path / "a", PAYMENT_RING)
    assert run(capsys, "detect", "--lake", str(tmp_path / "a" / "lake"), "--config", str(config))[0] == 0
    (incident,) = incidents_of(capsys, config)
    export = ["incidents", "export", incident["incident_id"], "--stix", "--config", str(config)]
    code, _, err = run(capsys, *export)
    assert code == 1 and "only a confirmed incident is shared" in err  # still open: nothing leaves
    assert (
        run(capsys, "incidents", "ack", incident["incident_id"], "--by", "oncall", "--config", str(config))[0]
        == 0
    )
    bundle = tmp_path / "ring.stix.json"
    extra = ["--lake", str(tmp_path / "a" / "lake"), "--producer", "Provider A", "--tlp", "amber"]
    assert run(capsys, *export, *extra, "--out", str(bundle))[0] == 0
    return bundle, incident


def test_bundle_is_valid_stix_with_producer_tlp_report_and_no_account_or_raw_fingerprint(tmp_path, capsys):
    bundle_path, incident = exported_ring_bundle(tmp_path, capsys)
    text = bundle_path.read_text()
    bundle = stix2.parse(text, allow_custom=False)  # the library's own validation, no custom content
    by_type: dict[str, list] = {}
    for item in bundle.objects:
        by_type.setdefault(item.type, []).append(item)
    (identity,) = by_type["identity"]
    (report,) = by_type["report"]
    assert identity.name == "Provider A"
    assert [marking.id for marking in by_type["marking-definition"]] == [stix2.TLP_AMBER.id]
    for item in by_type["indicator"] + [report, identity]:
        assert item.object_marking_refs == [stix2.TLP_AMBER.id]
    assert sorted(report.object_refs) == sorted(item.id for item in by_type["indicator"])
    assert all(item.created_by_ref == identity.id for item in by_type["indicator"] + [report])
    patterns = {item.pattern for item in by_type["indicator"]}
    card = stix.digest("pay_826d98191ee802fe")
    assert f"[x-usagewatch-payment:fingerprint_sha256 = '{card}']" in patterns
    assert any("User-Agent" in p for p in patterns)  # the ring's clients, nobody else's in A's lake
    # never our customers' identifiers, never the raw fingerprint
    assert "pay_826d98191ee802fe" not in text
    for account in (
        incident["account_ids"]
        + [e["api_key_id"] for e in PAYMENT_RING]
        + [e["org_id"] for e in PAYMENT_RING]
    ):
        assert account not in text
    # exporting again gives the same objects (ids from the incident and the pattern)
    config = str(tmp_path / "a" / "usagewatch.yml")
    lake = str(tmp_path / "a" / "lake")
    export = ["incidents", "export", incident["incident_id"], "--stix", "--lake", lake, "--config", config]
    again = stix2.parse(run(capsys, *export, "--producer", "Provider A")[1], allow_custom=False)
    assert {item.id for item in again.objects} == {item.id for item in bundle.objects}


def test_round_trip_the_peer_links_its_own_accounts_of_the_campaign(tmp_path, capsys):
    bundle, _ = exported_ring_bundle(tmp_path, capsys)
    # Provider B sees the same campaign under its own account ids, beside its ordinary customers (whose
    # clients include the ring's go-sdk user agent: that alone names nobody).
    peer_ring = [{**event, "account_id": "peer-" + event["account_id"]} for event in PAYMENT_RING]
    config = provider(tmp_path / "b", peer_ring + BENIGN)
    lake = str(tmp_path / "b" / "lake")

    # before the import, the card is just one card at B: no shared-indicator signal
    fresh = provider(tmp_path / "b-without-import", peer_ring + BENIGN)
    assert run(capsys, "detect", "--lake", str(tmp_path / "b-without-import" / "lake"),
               "--config", str(fresh), "--detection", "shared_indicator_match")[0] == 0  # fmt: skip
    assert shared_signals(fresh) == []

    code, out, _ = run(capsys, "indicators", "import", str(bundle), "--config", str(config), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["kinds"]["payment"] == 1 and result["skipped"] == 0

    assert (
        run(
            capsys, "detect", "--lake", lake, "--config", str(config), "--detection", "shared_indicator_match"
        )[0]
        == 0
    )
    (signal,) = shared_signals(config)
    assert signal["account_ids"] == sorted({event["account_id"] for event in peer_ring})
    assert signal["immediate"] and signal["severity"] == "critical"
    assert signal["evidence"]["producer"] == "Provider A"
    assert "payment" in signal["evidence"]["matched_kinds"]
    (incident,) = incidents_of(capsys, config)  # the peer's campaign is one case at B, at once
    assert incident["account_ids"] == signal["account_ids"]
    assert run(capsys, "audit", "verify", "--config", str(config))[0] == 0  # the import left the chain whole


def write_bundle(path: Path, objects: list) -> Path:
    path.write_text(stix2.Bundle(*objects).serialize() if objects else "")
    return path


def indicator(pattern: str) -> stix2.Indicator:
    return stix2.Indicator(pattern=pattern, pattern_type="stix", valid_from=NOW)


def stored(config: Path) -> list[tuple]:
    with AlertStore.open(config.parent / "state.duckdb") as store:
        present = store.con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [TABLE]
        ).fetchall()[0][0]
        return (
            store.con.execute(f"select kind, value from {TABLE} order by all").fetchall() if present else []
        )


def test_hostile_bundles_fail_clearly_and_load_nothing(tmp_path, capsys, monkeypatch):
    config = provider(tmp_path / "b", BENIGN)
    good = write_bundle(tmp_path / "good.json", [indicator("[ipv4-addr:value = '203.0.113.9']")])
    assert run(capsys, "indicators", "import", str(good), "--config", str(config))[0] == 0
    before = stored(config)
    assert before == [("ip", "203.0.113.9")]

    not_json = tmp_path / "not.json"
    not_json.write_text('{"type": "bundle", "objects": [')
    not_stix = tmp_path / "not-stix.json"
    not_stix.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator"}]}))
    # one good indicator and one custom object: allow_custom=False rejects the bundle, so nothing loads
    mixed = json.loads(stix2.Bundle(indicator("[ipv4-addr:value = '198.51.100.1']")).serialize())
    mixed["objects"].append({"type": "x-evil", "id": "x-evil--6f1b8a52-0b8a-4a7e-9d7e-1c2f6a1b2c3d",
                             "spec_version": "2.1", "payload": "a"})  # fmt: skip
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    deep = tmp_path / "deep.json"
    deep.write_text('{"type": "bundle", "objects": ' + "[" * 100_000 + "]" * 100_000 + "}")
    stix20 = tmp_path / "stix20.json"  # a STIX 2.0 bundle: objects without spec_version
    stix20_indicator = {
        "type": "indicator",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "labels": ["malicious-activity"],
        "valid_from": "2026-01-01T00:00:00Z",
        "pattern": "[ipv4-addr:value = '198.51.100.3']",
    }
    bundle20 = {"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "spec_version": "2.0"}
    stix20.write_text(json.dumps(bundle20 | {"objects": [stix20_indicator]}))
    unmatched = write_bundle(
        tmp_path / "hashes.json", [indicator("[file:hashes.'SHA-256' = '" + "a" * 64 + "']")]
    )
    cases = {
        not_json: "not a JSON document",
        not_stix: "not a valid STIX 2.1 bundle",
        tmp_path / "mixed.json": "not a valid STIX 2.1 bundle",
        deep: "not a JSON document",
        stix20: "not a valid STIX 2.1 bundle",
        unmatched: "no indicator usagewatch can match (1 of other kinds)",
        tmp_path / "missing.json": "cannot read",
    }
    for path, message in cases.items():  # an unusable input file: exit code 2
        code, _, err = run(capsys, "indicators", "import", str(path), "--config", str(config))
        assert code == 2 and str(path) in err and message in err and "nothing loaded" in err, err
        assert stored(config) == before

    monkeypatch.setattr(stix, "MAX_BUNDLE_BYTES", 1_000)
    huge = write_bundle(
        tmp_path / "huge.json",
        [indicator(f"[ipv4-addr:value = '10.0.{i // 250}.{i % 250}']") for i in range(20)],
    )
    code, _, err = run(capsys, "indicators", "import", str(huge), "--config", str(config))
    assert code == 2 and "over the 1,000-byte limit" in err
    monkeypatch.setattr(stix, "MAX_BUNDLE_BYTES", 10_000_000)
    monkeypatch.setattr(stix, "MAX_INDICATORS", 5)
    code, _, err = run(capsys, "indicators", "import", str(huge), "--config", str(config))
    assert code == 2 and "more than 5 indicators" in err
    assert stored(config) == before


def test_patterns_round_trip_every_kind_including_quotes_in_a_user_agent():
    values = [
        stix.Indicator("ip", "203.0.113.7"),
        stix.Indicator("ip", "2001:db8::1"),
        stix.Indicator("subnet", "203.0.113.0/24"),
        stix.Indicator("subnet", "2001:db8:1::/48"),
        stix.Indicator("asn", "64500"),
        stix.Indicator("payment", stix.digest("pay_1")),
        stix.Indicator("template", stix.digest("tmpl")),
        stix.Indicator("user_agent", "evil'client\\2.0 ]"),
    ]
    for value in values:
        text = stix.pattern(value)
        indicator(text)  # the library accepts the pattern
        assert stix.parse_pattern(text) == value
    assert stix.parse_pattern("[ipv4-addr:value = 'not-an-ip']") is None
    assert stix.parse_pattern("[autonomous-system:number = 99999999999]") is None


def test_truncated_addresses_are_shared_as_their_network():
    incident = {"entities": [{"type": "ip", "id": "203.0.113.0"}, {"type": "payment", "id": "pay_1"}]}
    found = stix.incident_indicators(incident, truncated_prefixes=(24, 48))
    assert found == [
        stix.Indicator("payment", stix.digest("pay_1")),
        stix.Indicator("subnet", "203.0.113.0/24"),
    ]
