"""Peers' indicators in the state database, and in front of the detections.

`usagewatch indicators import BUNDLE` loads a peer's STIX bundle (pipelines/exports/stix.py reads and
validates it whole) into the state's `shared_indicators` table in one transaction: all of it or nothing;
importing the same bundle again replaces its rows. `detect` copies the table onto the lake connection
(`install`), where the detection shared_indicator_match finds the accounts that use a peer's indicators.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.exports.stix import PeerBundle, SharedIndicator
from pipelines.incidents.alert_state import AlertStore, open_state_read_only, parse_time

TABLE = "shared_indicators"
# lake source IPs inside an imported subnet (DuckDB has no CIDR test without the inet extension)
NETWORK_MATCHES = "shared_indicator_networks"
_COLUMNS = (
    ("kind", "varchar", pa.string()),
    ("value", "varchar", pa.string()),
    ("indicator_id", "varchar", pa.string()),
    ("report_id", "varchar", pa.string()),
    ("report_name", "varchar", pa.string()),
    ("producer", "varchar", pa.string()),
    ("tlp", "varchar", pa.string()),
    ("valid_from", "timestamp", pa.timestamp("us")),
    ("valid_until", "timestamp", pa.timestamp("us")),
)
_ARROW = pa.schema([(name, kind) for name, _, kind in _COLUMNS])
_DDL = (
    f"create table if not exists {TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind, _ in _COLUMNS)
    + ", bundle_id varchar not null, imported_at timestamp not null)"
)


def import_bundle(state_file: str | Path, bundle: PeerBundle, now: dt.datetime) -> int:
    """Replace the bundle's indicators in the state, in one transaction; returns how many are loaded."""
    rows = pa.Table.from_pylist([asdict(indicator) for indicator in bundle.indicators], schema=_ARROW)
    with AlertStore.open(state_file) as store:
        con = store.con
        con.execute(_DDL)
        con.register("imported_indicators", rows)
        con.execute("begin transaction")
        try:
            con.execute(f"delete from {TABLE} where bundle_id = $bundle", {"bundle": bundle.bundle_id})
            con.execute(
                f"insert into {TABLE} select *, $bundle, $now from imported_indicators",
                {"bundle": bundle.bundle_id, "now": now.astimezone(dt.UTC).replace(tzinfo=None)},
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            con.unregister("imported_indicators")
    return len(bundle.indicators)


def stored_indicators(state_con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every imported indicator (an empty table when nothing was ever imported)."""
    present = state_con.execute(
        "select count(*) from information_schema.tables where table_name = $name", {"name": TABLE}
    ).fetchall()[0][0]
    if not present:
        return _ARROW.empty_table()
    names = ", ".join(name for name, _, _ in _COLUMNS)
    return state_con.sql(f"select {names} from {TABLE}").to_arrow_table().cast(_ARROW)


def load_from_state(state_file: str | Path) -> pa.Table:
    """The state's imported indicators, read-only (empty without a state or an import)."""
    if not Path(state_file).exists():
        return _ARROW.empty_table()
    con = open_state_read_only(Path(state_file))  # waits while a writer holds the state
    try:
        return stored_indicators(con)
    finally:
        con.close()


def install(
    con: duckdb.DuckDBPyConnection, indicators: pa.Table | list[SharedIndicator] | None = None
) -> None:
    """Put the indicators on a lake connection as temp tables the detection reads; with none given, empty
    tables unless some are installed already (every detection run calls this, as it does enrichment)."""
    if indicators is None:
        if con.execute(f"select count(*) from duckdb_tables() where table_name = '{TABLE}'").fetchall()[0][0]:
            return
        indicators = _ARROW.empty_table()
    if isinstance(indicators, list):
        indicators = pa.Table.from_pylist([asdict(indicator) for indicator in indicators], schema=_ARROW)
    networks = [
        ipaddress.ip_network(value)
        for kind, value in zip(indicators["kind"].to_pylist(), indicators["value"].to_pylist(), strict=True)
        if kind == "subnet"
    ]
    matches = []
    if networks:
        for (source_ip,) in con.execute("select distinct source_ip from events").fetchall():
            try:
                address = ipaddress.ip_address(source_ip)
            except ValueError:
                continue
            matches += [
                {"source_ip": source_ip, "value": str(network)}
                for network in networks
                if network.version == address.version and address in network
            ]
    network_table = pa.Table.from_pylist(
        matches, schema=pa.schema([("source_ip", pa.string()), ("value", pa.string())])
    )
    for name, table in ((TABLE, indicators), (NETWORK_MATCHES, network_table)):
        con.register(f"{name}_rows", table)
        con.execute(f"create or replace temp table {name} as select * from {name}_rows")
        con.unregister(f"{name}_rows")


def exclusive_user_agents(con: duckdb.DuckDBPyConnection, incident: dict[str, Any]) -> list[str]:
    """User agents the incident's accounts used over its span that no other account used then."""
    con.register(
        "incident_accounts", pa.Table.from_pylist([{"account_id": a} for a in incident["account_ids"]])
    )
    try:
        rows = con.execute(
            """
            with span_events as (
                select account_id, user_agent from events
                where event_time >= $first_seen and event_time < $last_seen and user_agent is not null
            ),
            agents as (
                select
                    user_agent,
                    bool_and(account_id in (select account_id from incident_accounts)) as campaign_only
                from span_events
                group by user_agent
            )
            select user_agent from agents where campaign_only order by user_agent
            """,
            {
                "first_seen": parse_time(incident["first_seen"]),
                "last_seen": parse_time(incident["last_seen"]),
            },
        ).fetchall()
    finally:
        con.unregister("incident_accounts")
    return [agent for (agent,) in rows]
