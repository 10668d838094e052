"""Indicator sharing between AI providers: a confirmed incident's indicators as a STIX 2.1 bundle, and a
peer's bundle read back (OASIS `stix2`, objects parsed with allow_custom=False).

What leaves the provider, and how (`export_bundle`):
- IPs and subnets the incident names (anonymizing exits, hosting and proxy blocks): as they are, since they
  are the campaign's infrastructure; when the lake holds truncated addresses (privacy.truncate_ip), an IP
  is only its network, so it is shared as that subnet;
- autonomous systems (their numbers);
- payment and prompt-template fingerprints: opaque already, and shared only as their SHA-256, so a peer
  matches them (it hashes its own fingerprints the same way) without learning the provider's values;
- user agents used by the campaign's accounts and by nobody else in the lake over the incident's span
  (a common client string would match every customer of the peer);
- never an account id, api_key_id, org id or event: those are our customers' identifiers, meaningless to a
  peer and personal data.
The bundle holds the producer's identity, a TLP marking on every object, one indicator per value and the
incident as a `report` referring to them. Ids are UUIDv5 of the incident and the pattern, so exporting the
same incident twice gives the same objects.

Reading (`read_bundle`) refuses, with a message naming the file, a bundle over MAX_BUNDLE_BYTES, one that is
not JSON, not a STIX 2.1 bundle by the library's validation, or holding more than MAX_INDICATORS; an
indicator whose pattern is not one of the shapes above is counted and skipped (a peer may share file hashes
too). Nothing is loaded unless the whole bundle reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stix2
from stix2.exceptions import STIXError

from pipelines.infra.clock import naive_utc

# Beyond these a bundle is an attack or a mistake, not a campaign's indicators.
MAX_BUNDLE_BYTES = 32 * 1024 * 1024
MAX_INDICATORS = 100_000
USER_AGENT_MAX_LENGTH = 512  # longer is no client string worth sharing; the contract bounds it anyway
TLP = {"clear": stix2.TLP_WHITE, "green": stix2.TLP_GREEN, "amber": stix2.TLP_AMBER, "red": stix2.TLP_RED}
TLP_NAMES = {marking.id: name for name, marking in TLP.items()}
_NAMESPACE = uuid.UUID("5b0f6f0e-6a5f-4c43-9d7b-2f4b8c1e6a11")  # usagewatch's UUIDv5 namespace for STIX ids
PAYMENT_OBJECT, TEMPLATE_OBJECT = "x-usagewatch-payment", "x-usagewatch-prompt-template"
USER_AGENT_PATH = "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'"
KINDS = ("ip", "subnet", "asn", "payment", "template", "user_agent")
_DESCRIPTIONS = {
    "ip": "Network exit used by a model-distillation campaign",
    "subnet": "Network block used by a model-distillation campaign",
    "asn": "Autonomous system hosting a model-distillation campaign's exits",
    "payment": "SHA-256 of a payment fingerprint funding a model-distillation campaign's accounts",
    "template": "SHA-256 of a prompt-template fingerprint a model-distillation campaign harvests with",
    "user_agent": "HTTP User-Agent used only by a model-distillation campaign's accounts",
}


class BundleError(ValueError):
    """A bundle cannot be written or read; the message names the incident or the file."""


@dataclass(frozen=True, order=True)
class Indicator:
    kind: str  # one of KINDS
    value: str  # canonical text: address, CIDR, AS number, SHA-256 hex, user agent


def digest(fingerprint: str) -> str:
    """How a fingerprint is shared: its SHA-256 (DuckDB's sha256() gives the same hex on the peer's side)."""
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    """A STIX pattern string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern(indicator: Indicator) -> str:
    kind, value = indicator.kind, indicator.value
    if kind in ("ip", "subnet"):
        version = ipaddress.ip_network(value, strict=False).version
        operator = "=" if kind == "ip" else "ISSUBSET"
        return f"[ipv{version}-addr:value {operator} {_quote(value)}]"
    if kind == "asn":
        return f"[autonomous-system:number = {int(value)}]"
    if kind in ("payment", "template"):
        fingerprint_object = PAYMENT_OBJECT if kind == "payment" else TEMPLATE_OBJECT
        return f"[{fingerprint_object}:fingerprint_sha256 = {_quote(value)}]"
    return f"[{USER_AGENT_PATH} = {_quote(value)}]"


_STRING = r"'((?:[^'\\]|\\.)*)'"
_PATTERNS = [
    ("ip", re.compile(rf"^\[ipv[46]-addr:value = {_STRING}\]$")),
    ("subnet", re.compile(rf"^\[ipv[46]-addr:value ISSUBSET {_STRING}\]$")),
    ("asn", re.compile(r"^\[autonomous-system:number = (\d{1,10})\]$")),
    ("payment", re.compile(rf"^\[{PAYMENT_OBJECT}:fingerprint_sha256 = '([0-9a-f]{{64}})'\]$")),
    ("template", re.compile(rf"^\[{TEMPLATE_OBJECT}:fingerprint_sha256 = '([0-9a-f]{{64}})'\]$")),
    ("user_agent", re.compile(rf"^\[{re.escape(USER_AGENT_PATH)} = {_STRING}\]$")),
]  # fmt: skip


def parse_pattern(text: str) -> Indicator | None:
    """The indicator a pattern of one of our shapes stands for (canonical value); None for any other."""
    for kind, shape in _PATTERNS:
        match = shape.match(text.strip())
        if not match:
            continue
        value = re.sub(r"\\(.)", r"\1", match.group(1))
        try:
            if kind == "ip":
                value = str(ipaddress.ip_address(value))
            elif kind == "subnet":
                value = str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            return None
        if kind == "asn" and not 0 < int(value) < 2**32:
            return None
        if kind == "user_agent" and not 0 < len(value) <= USER_AGENT_MAX_LENGTH:
            return None
        return Indicator(kind, value)
    return None


def incident_indicators(
    incident: dict[str, Any],
    user_agents: list[str] = (),
    truncated_prefixes: tuple[int, int] | None = None,
) -> list[Indicator]:
    """What of an incident may be shared (see the module docstring). `truncated_prefixes` (IPv4, IPv6):
    the lake holds addresses truncated to these prefixes, so an IP entity is shared as its network."""
    found = set()
    for entity in incident["entities"]:
        kind, value = entity["type"], entity["id"]
        if kind == "ip":
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                continue
            prefix = truncated_prefixes and truncated_prefixes[0 if address.version == 4 else 1]
            if prefix and prefix < address.max_prefixlen:
                found.add(Indicator("subnet", str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))))
            else:
                found.add(Indicator("ip", str(address)))
        elif kind == "subnet":
            try:
                found.add(Indicator("subnet", str(ipaddress.ip_network(value, strict=False))))
            except ValueError:
                continue
        elif kind == "asn" and value.isdigit():
            found.add(Indicator("asn", str(int(value))))
        elif kind in ("payment", "template"):
            found.add(Indicator(kind, digest(value)))
    found.update(
        Indicator("user_agent", agent) for agent in user_agents if 0 < len(agent) <= USER_AGENT_MAX_LENGTH
    )
    return sorted(found)


def _stix_id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(_NAMESPACE, '|'.join(parts))}"


def export_bundle(
    incident: dict[str, Any],
    indicators: list[Indicator],
    producer: str,
    tlp: str,
    now: dt.datetime,
) -> stix2.Bundle:
    """The STIX 2.1 bundle of one incident: producer identity, TLP marking, indicators, the report."""
    if not indicators:
        raise BundleError(f"incident {incident['incident_id']}: no shareable indicator (IP, subnet, ASN, "
                          "payment or template fingerprint, exclusive user agent)")  # fmt: skip
    marking = TLP[tlp]
    identity = stix2.Identity(
        id=_stix_id("identity", producer), name=producer, identity_class="organization",
        created=now, modified=now, object_marking_refs=[marking],
    )  # fmt: skip
    common = {
        "created_by_ref": identity.id,
        "object_marking_refs": [marking],
        "created": now,
        "modified": now,
    }
    valid_from = dt.datetime.fromisoformat(incident["first_seen"])
    objects = [
        stix2.Indicator(
            id=_stix_id("indicator", incident["incident_id"], pattern(indicator)),
            name=f"{indicator.kind}: {indicator.value}"[:250],
            description=_DESCRIPTIONS[indicator.kind],
            indicator_types=["malicious-activity"],
            pattern=pattern(indicator),
            pattern_type="stix",
            valid_from=valid_from,
            labels=[f"usagewatch-{indicator.kind}"],
            **common,
        )
        for indicator in indicators
    ]
    kinds = ", ".join(f"{sum(1 for i in indicators if i.kind == kind)} {kind}" for kind in KINDS
                      if any(i.kind == kind for i in indicators))  # fmt: skip
    # The incident's own title and summary name our accounts: the report says what the campaign was instead.
    report = stix2.Report(
        id=_stix_id("report", incident["incident_id"]),
        name=f"Model-distillation campaign: {len(incident['account_ids'])} accounts, "
        f"{len(incident['detection_ids'])} detection(s), severity {incident['severity']}",
        description=(
            f"Accounts at {producer} ran a model-distillation campaign from {incident['first_seen']} to "
            f"{incident['last_seen']}, found by: {', '.join(incident['detection_ids'])}. "
            f"Indicators: {kinds}. Fingerprints are SHA-256 of the provider's opaque values."
        ),
        report_types=["campaign", "indicator"],
        published=now,
        object_refs=[indicator.id for indicator in objects],
        **common,
    )
    return stix2.Bundle(marking, identity, *objects, report)


# --- reading a peer's bundle ------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedIndicator:
    """One indicator of a peer's bundle, as the state keeps it."""

    kind: str
    value: str
    indicator_id: str
    report_id: str | None
    report_name: str | None
    producer: str | None
    tlp: str | None
    valid_from: dt.datetime
    valid_until: dt.datetime | None


@dataclass(frozen=True)
class PeerBundle:
    bundle_id: str
    indicators: list[SharedIndicator]
    skipped: int  # indicators whose pattern is none of ours


def read_bundle(path: str | Path) -> PeerBundle:
    """Read and validate a peer's bundle whole; BundleError naming the file on any problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise BundleError(
                f"{path}: {size:,} bytes is over the {MAX_BUNDLE_BYTES:,}-byte limit for a bundle"
            )
        with path.open("rb") as source:
            raw = source.read(MAX_BUNDLE_BYTES + 1)  # the file may grow after stat
    except OSError as error:
        raise BundleError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: over the {MAX_BUNDLE_BYTES:,}-byte limit for a bundle")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise BundleError(f"{path}: not a JSON document: {error}") from None
    if not isinstance(document, dict) or document.get("type") != "bundle":
        raise BundleError(f"{path}: not a STIX bundle (its top-level object must have type 'bundle')")
    objects = document.get("objects")
    if not isinstance(objects, list):
        raise BundleError(f"{path}: bundle has no 'objects' list")
    if (
        sum(1 for item in objects if isinstance(item, dict) and item.get("type") == "indicator")
        > MAX_INDICATORS
    ):
        raise BundleError(f"{path}: more than {MAX_INDICATORS:,} indicators in one bundle")
    try:
        bundle = stix2.parse(document, allow_custom=False, version="2.1")
    except (STIXError, ValueError, TypeError, KeyError, RecursionError) as error:
        raise BundleError(f"{path}: not a valid STIX 2.1 bundle: {error}") from None
    parsed = list(bundle.get("objects", []))
    names = {item.id: item.name for item in parsed if item.type == "identity"}
    reports = {}
    for report in (item for item in parsed if item.type == "report"):
        for ref in report.object_refs:
            reports.setdefault(ref, report)
    indicators, skipped = [], 0
    for item in (item for item in parsed if item.type == "indicator"):
        found = parse_pattern(item.pattern) if item.get("pattern_type") == "stix" else None
        if found is None:
            skipped += 1
            continue
        report = reports.get(item.id)
        markings = [TLP_NAMES[ref] for ref in item.get("object_marking_refs", []) if ref in TLP_NAMES]
        indicators.append(
            SharedIndicator(
                kind=found.kind,
                value=found.value,
                indicator_id=item.id,
                report_id=report.id if report else None,
                report_name=report.name if report else None,
                producer=names.get(item.get("created_by_ref")),
                tlp=markings[0] if markings else None,
                valid_from=naive_utc(item.valid_from),
                valid_until=naive_utc(item.valid_until) if "valid_until" in item else None,
            )
        )
    if not indicators:
        raise BundleError(f"{path}: no indicator usagewatch can match ({skipped} of other kinds)")
    return PeerBundle(bundle.id, indicators, skipped)
