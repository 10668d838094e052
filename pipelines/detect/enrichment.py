"""Offline geo enrichment at detection time: fill null country/ASN of events from a GeoIP database.

The edge normally enriches events before they reach Kafka; when it could not (its GeoIP had no answer,
or the producer sends raw events), `country`/`asn` arrive null. The `events_enriched` view
(sql/views/events_enriched.sql) fills the gaps through this module's lookup UDF from geoip2fast's bundled
database (MaxMind GeoLite2 Country + ASN, IPv4 and IPv6; the package's
`get_database_info()["source_info"]` names the release). That database carries AS names and prefixes
but no AS numbers, so `asn` stays null for such events and `asn_key` (the AS number when known, else
"name:<AS name>") is what detections group ASNs by.

Cost: the lookup runs once per distinct unresolved IP, not per event (`measure_cost` times it); the
database loads once per process (~0.3 s).
"""

from __future__ import annotations

import functools
import ipaddress
import random
import time
from bisect import bisect_right

import duckdb

GEOIP_DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"  # the bundled Country + ASN file, IPv4 and IPv6
LOOKUP_FUNCTION = "geoip_lookup"
ENRICHED_VIEW = "events_enriched"
GEO_STRUCT = "struct(country varchar, asn_name varchar, asn_prefix varchar)"
# The unit synthetic traffic draws addresses in: an IPv4 /24 or an IPv6 /48 (what detections group by).
BLOCK_PREFIX = {4: 24, 6: 48}


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


class BlockSpace:
    """Whole /24s (IPv4) or /48s (IPv6) of some networks, drawn uniformly: the k-th block overall lies in
    the network whose cumulative block count first exceeds k."""

    def __init__(self, version: int, networks: list[tuple[int, int]]):
        self.version = version
        self.shift = (32 if version == 4 else 128) - BLOCK_PREFIX[version]
        self.firsts = [first for first, _ in networks]
        self.cumulative: list[int] = []
        total = 0
        for _, blocks in networks:
            total += blocks
            self.cumulative.append(total)

    def __bool__(self) -> bool:
        return bool(self.firsts)

    def draw(self, rng: random.Random) -> int:
        """The first address (as an integer) of a random block."""
        k = rng.randrange(self.cumulative[-1])
        index = bisect_right(self.cumulative, k)
        before = self.cumulative[index - 1] if index else 0
        return self.firsts[index] + ((k - before) << self.shift)


def _whole_blocks(version: int, first: int, prefix_length: int) -> tuple[int, int] | None:
    """(first address, number of whole blocks) of a network; None when it is smaller than one block."""
    if prefix_length > BLOCK_PREFIX[version]:
        return None
    return first, 1 << (BLOCK_PREFIX[version] - prefix_length)


def _database_tables():
    # geoip2fast keeps the loaded database's tables in module globals and has no public way to list
    # its networks; the pinned version (1.2.2) names them as read here. Callers confirm what they draw
    # through lookup(), so a change in that layout shows up as draws that do not verify.
    _database()
    from geoip2fast import geoip2fast as tables

    return tables


@functools.cache
def _country_spaces() -> dict[tuple[str, int], BlockSpace]:
    """(country, IP version) -> the whole blocks the database places in that country."""
    tables = _database_tables()
    codes = [name.split(":", 1)[0] for name in tables.mainListNamesCountry]
    networks: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for firsts, lengths, ids in zip(
        tables.mainListFirstIP, tables.mainListNetlength, tables.mainListIDCountryCodes, strict=True
    ):
        for first, length, code_index in zip(firsts, lengths, ids, strict=True):
            if code_index < 16:  # the first 16 codes are private, reserved and "not found"
                continue
            version = 4 if first <= 0xFFFFFFFF else 6
            blocks = _whole_blocks(version, first, length)
            if blocks:
                networks.setdefault((codes[code_index], version), []).append(blocks)
    return {key: BlockSpace(key[1], value) for key, value in networks.items()}


@functools.cache
def _as_spaces(asn_name: str) -> dict[str, BlockSpace]:
    """Country -> whole IPv4 /24s of an AS (by the database's AS name) that the database places there."""
    tables = _database_tables()
    networks: dict[str, list[tuple[int, int]]] = {}
    for name_index in (i for i, name in enumerate(tables.mainListNamesASN) if name == asn_name):
        for firsts, lengths, ids in zip(
            tables.mainListFirstIPASN, tables.mainListNetlengthASN, tables.mainListIDASN, strict=True
        ):
            position = -1
            while True:
                try:  # list.index scans in C: an AS is a few of the table's ~500,000 rows
                    position = ids.index(name_index, position + 1)
                except ValueError:
                    break
                first = firsts[position]
                blocks = _whole_blocks(4, first, lengths[position]) if first <= 0xFFFFFFFF else None
                # classified by its first block; a prefix straddling a border fails the draw's own check
                geo = lookup(str(ipaddress.IPv4Address(first + 1))) if blocks else None
                if geo and geo["country"]:
                    networks.setdefault(geo["country"], []).append(blocks)
    return {country: BlockSpace(4, value) for country, value in networks.items()}


def country_block(
    country: str, version: int, rng: random.Random, asn_name: str | None = None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A random /24 (IPv4) or /48 (IPv6) that the database places in country, drawn uniformly.

    With asn_name (IPv4 only), from that AS's networks in country when the database has any, so that a
    generated cloud or VPN address also carries its provider's AS name. Every draw is confirmed with
    lookup(); ValueError when the database has no such block.
    """
    space = _country_spaces().get((country, version))
    if asn_name is not None and version == 4:
        space = _as_spaces(asn_name).get(country) or space
    if not space:
        raise ValueError(f"the GeoIP database places no IPv{version} /{BLOCK_PREFIX[version]} in {country!r}")
    network_class = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    for _ in range(100):
        block = network_class((space.draw(rng), BLOCK_PREFIX[version]))
        geo = lookup(str(block.network_address + 1))
        if geo and geo["country"] == country:
            return block
    raise ValueError(f"GeoIP draws for {country!r} do not verify: has geoip2fast's table layout changed?")


def register_lookup(con: duckdb.DuckDBPyConnection) -> None:
    """Register the lookup UDF that the events_enriched view calls; idempotent.

    analyst.open_lake calls it before creating the views; the database loads on the first lookup only.
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
