"""What `usagewatch incidents export`, `signals export` and `indicators import` do, without argparse."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines.exports import indicators, siem_document, stix
from pipelines.incidents.alert_state import AlertStateError, AlertStore
from pipelines.infra.config import Config

# Only what on-call confirmed is shared with peers: an open incident may still be a false positive.
SHAREABLE_STATUSES = ("acknowledged", "resolved")


def _truncated_prefixes(config: Config) -> tuple[int, int] | None:
    """(IPv4, IPv6) prefixes the producers truncate addresses to (privacy.truncate_ip), if they do."""
    truncation = config.section("privacy").get("truncate_ip")
    return (truncation["ipv4_prefix"], truncation["ipv6_prefix"]) if isinstance(truncation, dict) else None


def incident_stix(
    store: AlertStore,
    config: Config,
    incident_id: str,
    producer: str,
    tlp: str,
    now: dt.datetime,
    lake_dir: str | Path | None = None,
) -> str:
    """The STIX 2.1 bundle (JSON text) of a confirmed incident; with the lake, its exclusive user agents."""
    record = store.get_incident(incident_id)
    incident = record["incident"]
    if incident["status"] not in SHAREABLE_STATUSES or incident.get("merged_into"):
        state = (
            f"merged into {incident['merged_into']}" if incident.get("merged_into") else incident["status"]
        )
        raise AlertStateError(
            f"incident {incident['incident_id']} is {state}: only a confirmed incident is shared "
            "(acknowledge it first: usagewatch incidents ack ID --by NAME)"
        )
    user_agents: list[str] = []
    if lake_dir is not None:
        from pipelines.lake.analyst import open_lake

        con = open_lake(lake_dir)
        try:
            user_agents = indicators.exclusive_user_agents(con, incident)
        finally:
            con.close()
    found = stix.incident_indicators(incident, user_agents, _truncated_prefixes(config))
    try:
        bundle = stix.export_bundle(incident, found, producer, tlp, now)
    except stix.BundleError as error:
        raise AlertStateError(str(error)) from None
    return bundle.serialize(pretty=True) + "\n"


def incident_siem(store: AlertStore, incident_id: str, fmt: str) -> str:
    """One incident as an OCSF or ECS document (JSON text)."""
    return json.dumps(siem_document(store.get_incident(incident_id)["incident"], fmt), sort_keys=True) + "\n"


def signals_siem(
    store: AlertStore,
    fmt: str,
    status: str | None = None,
    min_severity: str | None = None,
    detection_id: str | None = None,
    limit: int | None = None,
) -> str:
    """Signals as OCSF or ECS documents, one JSON line each (a SIEM's bulk-ingest shape)."""
    records = store.list_alerts(status, min_severity, detection_id, limit)
    return "".join(
        json.dumps(siem_document(json.loads(record["alert"]), fmt), sort_keys=True) + "\n"
        for record in records
    )


def import_indicators(state_file: Path, bundle_path: str | Path, now: dt.datetime) -> dict[str, Any]:
    """Read a peer's bundle whole, then load its indicators into the state in one transaction."""
    bundle = stix.read_bundle(bundle_path)
    loaded = indicators.import_bundle(state_file, bundle, now)
    kinds = dict(Counter(indicator.kind for indicator in bundle.indicators))
    return {"bundle_id": bundle.bundle_id, "loaded": loaded, "skipped": bundle.skipped, "kinds": kinds}
