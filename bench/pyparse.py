"""The access-event parse in pure Python, for the two alternatives the project's design is compared with.

It mirrors io.usagewatch.udf.ParseAccessEvent (pipelines/stream/jvm): same output fields in the same order
(error, raw, the contract fields, extras) and the same contract rules with the same dead-letter reasons.
Not mirrored: the hostile-input limits (record size, nesting depth, duplicate keys, length and token
bounds, strict UTF-8), which cost nothing on well-formed benchmark traffic. This is a benchmark
stand-in, not a second implementation to maintain.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re

from pipelines.lake import layout as lake

# Output order of the parse: error, raw, then the events table's columns up to extras.
CONTRACT_FIELDS = tuple(name for name, _ in lake.EVENTS.columns[: lake.EVENTS_CONTRACT_FIELDS])
KNOWN_FIELDS = frozenset(CONTRACT_FIELDS) - {"extras"}
ASN_TYPES = frozenset(("residential", "business", "hosting", "vpn", "tor", "mobile", "unknown"))
_EVENT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_COUNTRY = re.compile(r"[A-Z]{2}")
_HEX = re.compile(r"[0-9a-f]+")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


class InvalidEvent(ValueError):
    """The record breaks the contract; the message is the dead-letter reason."""


def _required_string(event: dict, field: str) -> str:
    value = event.get(field)
    if value is None:
        raise InvalidEvent(f"missing required field: {field}")
    if not isinstance(value, str):
        raise InvalidEvent(f"wrong type: {field} must be a string")
    if not value:
        raise InvalidEvent(f"invalid {field}: must not be empty")
    return value


def _optional_string(event: dict, field: str) -> str | None:
    value = event.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidEvent(f"wrong type: {field} must be a string or null")
    return value


def _matching(event: dict, field: str, pattern: re.Pattern, what: str) -> str | None:
    value = _optional_string(event, field)
    if value is not None and not pattern.fullmatch(value):
        raise InvalidEvent(f"invalid {field}: must be {what}")
    return value


def _integral(value, field: str) -> int:
    # JSON Schema integers: 12.0 counts, True and 1.5 do not (bool is an int in Python).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"wrong type: {field} must be an integer")
    if not -(2**63) <= value < 2**63:
        raise InvalidEvent(f"invalid {field}: out of range")
    return value


def _count(event: dict, field: str, required: bool) -> int | None:
    value = event.get(field)
    if value is None:
        if required:
            raise InvalidEvent(f"missing required field: {field}")
        return None
    value = _integral(value, field)
    if value < 0:
        raise InvalidEvent(f"invalid {field}: must be >= 0")
    return value


def _coordinate(event: dict, field: str, bound: int) -> float | None:
    value = event.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"wrong type: {field} must be a number or null")
    if not -bound <= value <= bound:
        raise InvalidEvent(f"invalid {field}: must be within [-{bound}, {bound}]")
    return float(value)


def _source_ip(value: str) -> str:
    if _IPV4.fullmatch(value):
        return value
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
            return value
        except ValueError:
            pass
    raise InvalidEvent("invalid source_ip: not an IPv4 or IPv6 address")


def _event_time(value: str) -> dt.datetime:
    if not _EVENT_TIME.fullmatch(value):
        raise InvalidEvent(
            "invalid event_time: expected RFC 3339 UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z"
        )
    return dt.datetime.fromisoformat(value[:-1])  # naive UTC, as the lake stores it


def _request_tags(event: dict) -> list[str]:
    tags = event.get("request_tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidEvent("wrong type: request_tags must be an array of strings")
    if not all(tags):
        raise InvalidEvent("invalid request_tags: a tag must not be empty")
    return tags


def _status_code(event: dict) -> int:
    if event.get("status_code") is None:
        raise InvalidEvent("missing required field: status_code")
    status = _integral(event["status_code"], "status_code")
    if not 100 <= status <= 599:
        raise InvalidEvent("invalid status_code: must be an HTTP status (100-599)")
    return status


def _asn_type(event: dict) -> str | None:
    asn_type = _optional_string(event, "asn_type")
    if asn_type is not None and asn_type not in ASN_TYPES:
        raise InvalidEvent(f"invalid asn_type: must be one of {sorted(ASN_TYPES)}")
    return asn_type


def _fields(event: dict) -> list:
    # A list display evaluates in order, so the first broken rule is reported, as in the Java parser.
    unknown = {key: value for key, value in event.items() if key not in KNOWN_FIELDS}
    return [
        _required_string(event, "event_id"),
        _event_time(_required_string(event, "event_time")),
        _required_string(event, "account_id"),
        _required_string(event, "api_key_id"),
        _optional_string(event, "org_id"),
        _source_ip(_required_string(event, "source_ip")),
        _matching(event, "country", _COUNTRY, "an ISO-3166 alpha-2 code"),
        _coordinate(event, "latitude", 90),
        _coordinate(event, "longitude", 180),
        _count(event, "asn", required=False),
        _asn_type(event),
        _required_string(event, "model"),
        _required_string(event, "endpoint"),
        _count(event, "input_tokens", required=True),
        _count(event, "output_tokens", required=True),
        _status_code(event),
        _count(event, "latency_ms", required=False),
        _matching(event, "prompt_fingerprint", _HEX, "a lowercase hex string"),
        _optional_string(event, "payment_fingerprint"),
        _optional_string(event, "user_agent"),
        _request_tags(event),
        json.dumps(unknown, separators=(",", ":")) if unknown else None,
    ]


def parse(raw: str | bytes) -> list:
    """[error, raw, *contract fields, extras]: error is None for a valid event, else every field is."""
    try:
        event = json.loads(raw)
        if not isinstance(event, dict):
            raise InvalidEvent("invalid JSON: not an object")
        return [None, raw if isinstance(raw, str) else raw.decode(), *_fields(event)]
    except json.JSONDecodeError as error:
        reason = f"invalid JSON: {error.msg}"
    except InvalidEvent as error:
        reason = str(error)
    return [reason, raw if isinstance(raw, str) else raw.decode(errors="replace")] + [None] * len(
        CONTRACT_FIELDS
    )
