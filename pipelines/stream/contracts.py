"""The data contracts: JSON Schemas for access events, signals (alerts) and incidents; their validators."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipelines.infra.paths import SCHEMAS_DIR

ACCESS_EVENT_SCHEMA = "access_event.schema.json"
ALERT_SCHEMA = "alert.schema.json"
INCIDENT_SCHEMA = "incident.schema.json"
DETECTION_SCHEMA = "detection.schema.json"
TECHNIQUES_SCHEMA = "techniques.schema.json"
# The MITRE ATT&CK Enterprise and ATLAS ids rules may name: names, tactics, the releases they come from.
TECHNIQUES_REFERENCE = SCHEMAS_DIR / "reference" / "techniques.json"
TECHNIQUE_FRAMEWORKS = ("attack", "atlas")  # the keys of schemas/techniques.schema.json


class ContractViolation(ValueError):
    """A record does not satisfy its schema; `violations` lists every problem found."""

    def __init__(self, schema_name: str, violations: list[str]):
        self.schema_name = schema_name
        self.violations = violations
        super().__init__(f"{schema_name}: {'; '.join(violations)}")


@cache
def load_schema(name: str) -> dict[str, Any]:
    path = SCHEMAS_DIR / name
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from error
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _registry() -> Registry:
    """Every schema under schemas/ by its $id, so one schema can $ref another (techniques.schema.json)."""
    resources = [
        Resource.from_contents(load_schema(path.name)) for path in sorted(SCHEMAS_DIR.glob("*.schema.json"))
    ]
    return Registry().with_resources((resource.id(), resource) for resource in resources)


@cache
def _validator(name: str) -> Draft202012Validator:
    # Without a format checker jsonschema treats "format" as an annotation and accepts any string as an IP.
    return Draft202012Validator(
        load_schema(name), registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def schema_errors(name: str, obj: Any) -> list[tuple[list[str | int], str]]:
    """(path inside obj, message) of every violation of schema `name`, in document order."""
    found = []
    for error in sorted(_validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path)):
        # An anyOf failure (source_ip) only says "not valid under any of the given schemas"; its
        # sub-errors name the formats that were tried.
        detail = " and ".join(sub.message for sub in error.context) if error.context else error.message
        found.append((list(error.absolute_path), detail))
    return found


def _violations(name: str, obj: Any) -> list[str]:
    return [
        f"{'/'.join(str(part) for part in path) or '(record)'}: {detail}"
        for path, detail in schema_errors(name, obj)
    ]


def validate_event(obj: Any) -> None:
    """Raise ContractViolation unless obj is a valid access event."""
    violations = _violations(ACCESS_EVENT_SCHEMA, obj)
    if violations:
        raise ContractViolation(ACCESS_EVENT_SCHEMA, violations)


def validate_alert(obj: Any) -> None:
    """Raise ContractViolation unless obj is a valid alert."""
    violations = _violations(ALERT_SCHEMA, obj)
    if violations:
        raise ContractViolation(ALERT_SCHEMA, violations)


def validate_incident(obj: Any) -> None:
    """Raise ContractViolation unless obj is a valid incident document (routed copies included)."""
    violations = _violations(INCIDENT_SCHEMA, obj)
    if violations:
        raise ContractViolation(INCIDENT_SCHEMA, violations)


def format_event_time(moment: datetime) -> str:
    """RFC 3339 UTC with exactly milliseconds, e.g. 2026-11-27T08:00:00.123Z.

    Naive datetimes are taken as UTC, the lake's convention for TIMESTAMP(3) columns. Sub-millisecond
    digits are truncated, not rounded, so a time never moves into the next window.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


@cache
def _technique_reference() -> dict[str, Any]:
    return json.loads(TECHNIQUES_REFERENCE.read_text(encoding="utf-8"))


def known_techniques() -> dict[str, dict[str, dict[str, Any]]]:
    """framework ("attack", "atlas") -> technique id -> {name, tactics or parent, ...}."""
    return {framework: _technique_reference()[framework]["techniques"] for framework in TECHNIQUE_FRAMEWORKS}


def technique_versions() -> dict[str, str]:
    """framework -> the ATT&CK / ATLAS release the bundled list is taken from (attack: 18.1)."""
    return {
        framework: str(_technique_reference()[framework]["version"]) for framework in TECHNIQUE_FRAMEWORKS
    }
