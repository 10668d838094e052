"""Correlation, pure functions over signal documents: which entity a signal names, which signals form one
component (union-find over accounts and the entities that link them, within the incident window), a
component's risk (the strongest signal plus a share of the others, capped per detection) and the stable
incident id. No state, no I/O: pipelines/incidents/engine.py applies them to the store."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pipelines.incidents.alert_state import parse_time
from pipelines.incidents.settings import IncidentSettings

# A detection that declared nothing (an older state) adds at most one signal's worth and links nothing.
_UNDECLARED_RISK = (100, False)

# Signal entity_type -> the incident's entity type: one name per kind everywhere.
_ENTITY_TYPES = {
    "ip": "ip",
    "asn": "asn",
    "payment": "payment",
    "prompt_fingerprint": "template",
    "ring": "ring",
    "region": "region",
}


def signal_entity(signal: dict[str, Any]) -> dict[str, str] | None:
    """The signal's non-account entity, typed as incidents type it; None for an account signal."""
    kind = signal["entity_type"]
    if kind == "account":
        return None
    identifier = str(signal["entity_id"])
    if kind == "ip" and "/" in identifier:
        return {"type": "subnet", "id": identifier}
    if kind == "asn":  # 'AS13335' and '13335' are one ASN
        identifier = (
            identifier.upper().removeprefix("AS")
            if identifier.upper().removeprefix("AS").isdigit()
            else identifier
        )
    if kind == "region" and not signal["account_ids"]:
        return {"type": "partition", "id": identifier}  # data quality: a slice of the lake
    return {"type": _ENTITY_TYPES[kind], "id": identifier}


def _node(entity: dict[str, str]) -> str:
    return f"{entity['type']}:{entity['id']}"


@dataclass
class Component:
    """Accounts and entities tied together, and every window signal touching them."""

    nodes: set[str]
    signals: list[dict[str, Any]]


def correlate(
    signals: list[dict[str, Any]],
    policies: dict[str, tuple[int, bool]],
    settings: IncidentSettings,
    traffic_links: dict[str, set[str]] | None = None,
) -> list[Component]:
    """Union-find over accounts and entities; one component per connected campaign, oldest first.

    `traffic_links` (account -> nodes from its traffic, see `lake_account_links`) adds two ties the
    signals do
    not carry themselves:
    - `org:ID` between the accounts of one organisation that carry an immediate signal (e.g. served
      restricted-region access): one org doing that is one case for on-call, not several. Only immediate
      signals link by org, since those open an incident anyway; summing the weak signals of a whole org
      (a research team's extraction-like traffic) would raise one from noise;
    - `exit:IP` between accounts with an immediate signal that used the same anonymizing exit (VPN,
      hosting, Tor): a restricted-region team sharing its VPN is one operation. Only immediate signals,
      for the same reason: early in a window, partial data gives ordinary VPN and cloud users signals
      strong enough to link, and an exit shared with one of them must not pull a crowd into a campaign.
      The exit's other users are not tied in.
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(nodes: list[str]) -> None:
        roots = sorted({find(node) for node in nodes})
        for root in roots[1:]:
            parent[root] = roots[0]

    signal_nodes = []
    for signal in signals:
        accounts = [f"account:{account}" for account in signal["account_ids"]]
        entity = signal_entity(signal)
        links = policies.get(signal["detection_id"], _UNDECLARED_RISK)[1]
        strong = signal["risk_score"] >= settings.link_min_risk
        if links and strong:
            union(accounts + ([_node(entity)] if entity else []))
        for account in signal["account_ids"] if traffic_links else ():
            for node in traffic_links.get(account, ()):
                if signal["immediate"]:
                    union([f"account:{account}", node])
        nodes = accounts or ([_node(entity)] if entity else [])
        for node in nodes:
            find(node)
        signal_nodes.append(nodes)
    groups: dict[str, Component] = {}
    for signal, nodes in zip(signals, signal_nodes, strict=True):
        # A non-linking signal naming accounts of several components counts in each of them.
        for root in {find(node) for node in nodes}:
            groups.setdefault(root, Component(set(), [])).signals.append(signal)
    for node in parent:
        if find(node) in groups:
            groups[find(node)].nodes.add(node)
    return sorted(groups.values(), key=lambda c: min((s["window_start"], s["alert_id"]) for s in c.signals))


def component_risk(
    signals: list[dict[str, Any]], policies: dict[str, tuple[int, bool]], share: float
) -> tuple[int, list[dict[str, Any]]]:
    """(risk, per-detection contributions, largest first).

    Per detection: the strongest signal plus `share` of each other one, capped at the detection's
    max_contribution. Repeats of one finding (same dedup_key: hourly re-detections, suppressed
    duplicates) are not independent evidence, so each dedup_key counts once, at its strongest. The
    sum is capped at 100 per detection.
    """
    strongest: dict[str, dict[str, int]] = defaultdict(dict)
    counts: dict[str, int] = defaultdict(int)
    for signal in signals:
        by_key = strongest[signal["detection_id"]]
        by_key[signal["dedup_key"]] = max(by_key.get(signal["dedup_key"], 0), signal["risk_score"])
        counts[signal["detection_id"]] += 1
    contributions = []
    for detection_id, by_key in strongest.items():
        risks = sorted(by_key.values(), reverse=True)
        cap = policies.get(detection_id, _UNDECLARED_RISK)[0]
        value = min(cap, risks[0] + share * sum(risks[1:]))
        contributions.append(
            {
                "detection_id": detection_id,
                "contribution": int(round(value)),
                "signals": counts[detection_id],
                "strongest_signal_risk": risks[0],
                "max_contribution": cap,
            }
        )
    contributions.sort(key=lambda item: (-item["contribution"], item["detection_id"]))
    total = min(sum(item["contribution"] for item in contributions), 100 * len(contributions))
    return total, contributions


def incident_id_for(signal: dict[str, Any], window: dt.timedelta) -> str:
    """Derived from the earliest signal's dedup_key and the window period it starts in: a replay of the
    same history into a fresh state yields the same ids."""
    seconds = int(parse_time(signal["window_start"]).replace(tzinfo=dt.UTC).timestamp())
    period = max(int(window.total_seconds()), 1)
    bucket = seconds - seconds % period
    return hashlib.sha256(f"incident:{signal['dedup_key']}@{bucket}".encode()).hexdigest()[:32]
