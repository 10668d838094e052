"""Offline geo enrichment at detection time: fill null country/ASN of events from a GeoIP database.

The edge normally enriches events before they reach Kafka; when it could not (its GeoIP had no answer,
or the producer sends raw events), `country`/`asn` arrive null. The `events_enriched` view fills the
gaps from geoip2fast's bundled database (MaxMind GeoLite2 Country + ASN, IPv4 and IPv6; the package's
`get_database_info()["source_info"]` names the release). That database carries AS names and prefixes
but no AS numbers, so `asn` stays null for such events and `asn_key` (the AS number when known, else
"name:<AS name>") is what detections group ASNs by.

Cost: the lookup runs once per distinct unresolved IP, not per event (`measure_cost` times it); the
database loads once per process (~0.3 s).
"""

from __future__ import annotations

import functools
import ipaddress
import time

import duckdb

GEOIP_DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"  # the bundled Country + ASN file, IPv4 and IPv6
LOOKUP_FUNCTION = "geoip_lookup"
ENRICHED_VIEW = "events_enriched"
GEO_STRUCT = "struct(country varchar, asn_name varchar, asn_prefix varchar)"

# Null country or asn: the edge had no answer; anything else is the edge's (fresher) enrichment.
ENRICHED_VIEW_SQL = f"""
create or replace view {ENRICHED_VIEW} as
with unresolved_ips as (
    -- one lookup per distinct address: a proxy IP with 10,000 events costs one call
    select distinct source_ip
    from events
    where country is null or asn is null
),

resolved_ips as (
    select source_ip, {LOOKUP_FUNCTION}(source_ip) as geo
    from unresolved_ips
)

select
    events.* replace (coalesce(events.country, resolved_ips.geo.country) as country),
    case
        when events.asn is not null then 'AS' || events.asn
        when resolved_ips.geo.asn_name is not null then 'name:' || resolved_ips.geo.asn_name
    end as asn_key,
    -- GeoIP's accuracy radius (km, 67 % confidence) when the edge sends it as the extra field
    -- geo_accuracy_km; the geography detections widen their tolerance by it. Unparseable means unknown.
    try_cast(json_extract_string(events.extras, '$.geo_accuracy_km') as double) as geo_accuracy_km,
    resolved_ips.geo.asn_name as geoip_asn_name,
    resolved_ips.geo.asn_prefix as geoip_asn_prefix,
    -- where the country came from: the edge, this lookup, or nobody
    case
        when events.country is not null then 'edge'
        when resolved_ips.geo.country is not null then 'geoip'
    end as country_source
from events
left join resolved_ips on events.source_ip = resolved_ips.source_ip
"""


@functools.cache
def _database():
    # Imported lazily: loading the 22 MB database is only worth it when a lookup is needed.
    from geoip2fast import GeoIP2Fast

    return GeoIP2Fast(geoip2fast_data_file=GEOIP_DATA_FILE)


def database_source() -> str:
    """The GeoIP release in use, e.g. MAXMIND:GeoLite2-CountryASN-IPv4IPv6-en-20240618."""
    return _database().get_database_info()["source_info"]


@functools.lru_cache(maxsize=65_536)
def lookup(ip: str | None) -> dict[str, str | None] | None:
    """Country (ISO alpha-2), AS name and AS prefix of a public IP; None for private/invalid/unknown."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if not address.is_global:
        return None
    result = _database().lookup(str(address))
    country = result.country_code or None
    # geoip2fast answers "--" (or an error text) for networks it does not know
    if country is not None and (len(country) != 2 or not country.isalpha()):
        country = None
    asn_name = getattr(result, "asn_name", "") or None
    asn_prefix = getattr(result, "asn_cidr", "") or None
    if country is None and asn_name is None:
        return None
    return {"country": country, "asn_name": asn_name, "asn_prefix": asn_prefix}


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Register the lookup UDF and create the events_enriched view on a connection with an events view.

    Idempotent, so every detection run can call it on the connection it was given.
    """
    registered = con.execute(
        "select count(*) from duckdb_functions() where function_name = $name", {"name": LOOKUP_FUNCTION}
    ).fetchall()[0][0]
    if not registered:
        con.create_function(
            LOOKUP_FUNCTION,
            lookup,
            ["VARCHAR"],
            GEO_STRUCT,
            null_handling="special",  # a null IP returns null instead of skipping the call
            side_effects=False,
        )
    con.execute(ENRICHED_VIEW_SQL)


def measure_cost(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Time a full scan of events_enriched (cold lookup cache) against the plain events view."""
    lookup.cache_clear()
    _database()  # load outside the timing: it is paid once per process
    timings = {}
    for view in ("events", ENRICHED_VIEW):
        started = time.perf_counter()
        rows = con.execute(f"select count(*), count(distinct country) from {view}").fetchall()[0][0]
        timings[view] = time.perf_counter() - started
    unresolved = con.execute(
        "select count(*), count(distinct source_ip) from events where country is null or asn is null"
    ).fetchall()[0]
    extra = timings[ENRICHED_VIEW] - timings["events"]
    return {
        "events": rows,
        "unresolved_events": unresolved[0],
        "unresolved_ips": unresolved[1],
        "plain_seconds": timings["events"],
        "enriched_seconds": timings[ENRICHED_VIEW],
        "extra_seconds_per_100k_events": extra * 100_000 / rows if rows else 0.0,
    }
