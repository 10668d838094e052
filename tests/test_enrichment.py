"""Geo enrichment: the bundled GeoLite2 data fills null country/ASN, and the edge's values win."""

from __future__ import annotations

import random

import pytest
from lakefixture import write_events

from pipelines.detect import enrichment
from pipelines.lake.analyst import open_lake

BASE = {
    "event_time": "2026-03-01T10:00:00.000Z", "api_key_id": "key-1", "model": "nimbus-large",
    "endpoint": "/v1/messages", "input_tokens": 10, "output_tokens": 10, "status_code": 200,
}  # fmt: skip


def test_lookup_knows_public_addresses_and_refuses_private_ones():
    google = enrichment.lookup("8.8.8.8")
    assert google["country"] == "US" and google["asn_name"] == "GOOGLE"
    assert enrichment.lookup("2a00:1450:4001::1")["country"] == "DE"
    assert enrichment.lookup("10.1.2.3") is None
    assert enrichment.lookup("not-an-ip") is None
    assert enrichment.database_source().startswith("MAXMIND:GeoLite2")


def test_country_blocks_are_where_the_database_places_them():
    rng = random.Random(7)
    for country in ("US", "LU", "BR", "JP"):
        for version in (4, 6):
            block = enrichment.country_block(country, version, rng)
            assert block.prefixlen == enrichment.BLOCK_PREFIX[version]
            for address in (block.network_address + 1, block.broadcast_address - 1):
                assert enrichment.lookup(str(address))["country"] == country, (country, block)
    # an AS's own networks in that country, where the database has some
    amazon = enrichment.country_block("SG", 4, rng, asn_name="AMAZON-02")
    assert enrichment.lookup(str(amazon.network_address + 9)) == {
        **enrichment.lookup(str(amazon.network_address + 9)),
        "country": "SG",
        "asn_name": "AMAZON-02",
    }
    with pytest.raises(ValueError, match="'XX'"):
        enrichment.country_block("XX", 4, rng)


def test_enriched_view_fills_only_the_gaps(tmp_path):
    write_events(tmp_path, [
        {**BASE, "event_id": "a", "account_id": "unresolved", "source_ip": "8.8.8.8"},
        {**BASE, "event_id": "b", "account_id": "edge", "source_ip": "8.8.4.4", "country": "FR", "asn": 3215,
         "org_id": "org-fr"},
        {**BASE, "event_id": "c", "account_id": "private", "source_ip": "192.168.1.1"},
    ])  # fmt: skip
    con = open_lake(tmp_path)  # what `usagewatch sql` and the detection runner both open
    try:
        enrichment.register_lookup(con)  # idempotent: open_lake has registered it already
        rows = con.execute(
            "select account_id, country, asn_key, country_source, org_key from events_enriched "
            "order by account_id"
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        ("edge", "FR", "AS3215", "edge", "org-fr"),
        ("private", None, None, None, "no-org:private"),
        ("unresolved", "US", "name:GOOGLE", "geoip", "no-org:unresolved"),
    ]
