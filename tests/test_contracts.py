"""The event and alert contracts: what they accept, what they reject and how they say so."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice

import pytest

from pipelines.stream import contracts
from pipelines.stream.contracts import (
    ACCESS_EVENT_SCHEMA,
    ContractViolation,
    format_event_time,
    load_schema,
    validate_alert,
    validate_event,
)
from pipelines.traffic.generator import GeneratorConfig, generate_events

VALID_EVENT = {
    "event_id": "0b0c6c1e-7d0f-4a59-9a55-0c1b7f0e2a11",
    "event_time": "2026-11-27T08:00:00.123Z",
    "account_id": "acct_1",
    "api_key_id": "key_1",
    "org_id": None,
    "source_ip": "81.2.69.142",
    "country": "GB",
    "latitude": 51.5072,
    "longitude": -0.1276,
    "asn": 64500,
    "asn_type": "residential",
    "model": "nimbus-large",
    "endpoint": "/v1/messages",
    "input_tokens": 1200,
    "output_tokens": 300,
    "status_code": 200,
    "latency_ms": 900,
    "prompt_fingerprint": "9f86d081884c7d65",
    "payment_fingerprint": "pay_1",
    "user_agent": "curl/8.5.0",
    "request_tags": ["reasoning_elicitation"],
}

VALID_ALERT = {
    "alert_id": "a-1",
    "detection_id": "hydra_cluster",
    "title": "40 accounts behind 3 hosting IPs in 203.0.113.0/24",
    "severity": "high",
    "entity_type": "ring",
    "entity_id": "ring-203.0.113",
    "account_ids": ["acct_1", "acct_2"],
    "window_start": "2026-11-27T08:00:00Z",
    "window_end": "2026-11-27T08:30:00.000+00:00",
    "evidence": {"ips": ["203.0.113.10"], "accounts": 2},
    "runbook": "docs/runbooks/hydra.md",
    "dedup_key": "hydra_cluster:ring-203.0.113",
    "created_at": "2026-11-27T08:31:02.5Z",
    "risk_score": 60,
    "immediate": False,
    "techniques": {"attack": ["T1090"], "atlas": ["AML.T0024.002"]},
}


def test_generated_events_satisfy_the_event_contract():
    config = GeneratorConfig(
        seed=3, start=datetime(2026, 11, 27, 8, tzinfo=UTC), duration=timedelta(minutes=10)
    )
    checked = 0
    for event in islice(generate_events(config), 3000):
        validate_event(event)
        checked += 1
    assert checked > 500


def test_nullable_fields_may_be_null_or_absent_and_extra_fields_pass():
    nullable = ["org_id", "country", "latitude", "longitude", "asn", "asn_type", "latency_ms",
                "prompt_fingerprint", "payment_fingerprint", "user_agent"]  # fmt: skip
    validate_event({**VALID_EVENT, **dict.fromkeys(nullable)})
    minimal = {key: value for key, value in VALID_EVENT.items() if key not in [*nullable, "request_tags"]}
    validate_event({**minimal, "added_by_a_newer_producer": 1})
    validate_event({**VALID_EVENT, "source_ip": "2a01:4f8:10a:1::2", "request_tags": []})


# Every required field of an event, and every field of an alert (all are required).
MISSING_FIELD_CASES = [
    *((validate_event, VALID_EVENT, field) for field in load_schema(ACCESS_EVENT_SCHEMA)["required"]),
    *((validate_alert, VALID_ALERT, field) for field in sorted(VALID_ALERT)),
]


@pytest.mark.parametrize(
    ("validate", "valid", "field"),
    MISSING_FIELD_CASES,
    ids=[f"{validate.__name__}-{field}" for validate, _, field in MISSING_FIELD_CASES],
)
def test_a_document_missing_a_required_field_is_rejected_naming_it(validate, valid, field):
    document = {key: value for key, value in valid.items() if key != field}
    with pytest.raises(ContractViolation, match=f"'{field}' is a required property"):
        validate(document)


@pytest.mark.parametrize(
    ("field", "bad_value"),
    [
        ("event_id", 17),
        ("event_time", "2026-11-27T08:00:00Z"),  # no milliseconds
        ("event_time", "2026-11-27T08:00:00.123456Z"),  # microseconds
        ("event_time", "2026-11-27T08:00:00.123+00:00"),  # offset instead of Z
        ("event_time", "2026-11-27 08:00:00.123Z"),
        ("event_time", "2026-13-27T08:00:00.123Z"),
        ("account_id", ""),
        ("api_key_id", None),
        ("org_id", 5),
        ("source_ip", "1.2.3.256"),
        ("source_ip", "1.2.3"),
        ("source_ip", "not-an-ip"),
        ("source_ip", "2a01::4f8::1"),
        ("country", "gb"),
        ("country", "GBR"),
        ("latitude", 90.5),
        ("longitude", -180.1),
        ("latitude", "51.5"),
        ("asn", "AS64500"),
        ("asn", 1.5),
        ("asn_type", "cloud"),
        ("model", None),
        ("endpoint", 3),
        ("input_tokens", "abc"),
        ("input_tokens", -1),
        ("input_tokens", 1.5),
        ("output_tokens", -1),
        ("status_code", "200"),
        ("status_code", 42),
        ("latency_ms", -5),
        ("prompt_fingerprint", "9F86D081"),
        ("prompt_fingerprint", "xyz"),
        ("payment_fingerprint", 7),
        ("user_agent", ["curl"]),
        ("request_tags", "reasoning_elicitation"),
        ("request_tags", [1]),
    ],
)
def test_event_breaking_a_field_rule_is_rejected_naming_the_field(field, bad_value):
    with pytest.raises(ContractViolation) as raised:
        validate_event({**VALID_EVENT, field: bad_value})
    assert raised.value.violations
    assert all(re.match(f"{field}(/[0-9]+)?:", message) for message in raised.value.violations)


def test_bad_ip_message_says_which_formats_were_tried():
    with pytest.raises(ContractViolation, match="is not a 'ipv4' and .* is not a 'ipv6'"):
        validate_event({**VALID_EVENT, "source_ip": "999.1.1.1"})


def test_event_that_is_not_an_object_is_rejected():
    with pytest.raises(ContractViolation, match=r"\(record\): \[\] is not of type 'object'"):
        validate_event([])


def test_every_violation_is_reported_at_once():
    with pytest.raises(ContractViolation) as raised:
        validate_event({**VALID_EVENT, "input_tokens": "abc", "output_tokens": -1, "country": "gb"})
    assert sorted(message.split(":")[0] for message in raised.value.violations) == [
        "country", "input_tokens", "output_tokens"
    ]  # fmt: skip


def test_sample_alert_is_valid():
    validate_alert(VALID_ALERT)


@pytest.mark.parametrize(
    ("field", "bad_value"),
    [
        ("severity", "urgent"),
        ("severity", "HIGH"),
        ("entity_type", "user"),
        ("account_ids", "acct_1"),
        ("account_ids", ["acct_1", "acct_1"]),
        ("window_start", "2026-11-27"),
        ("window_end", "yesterday"),
        ("created_at", "2026-11-27T08:31:02"),  # no offset: ambiguous
        ("evidence", []),
        ("dedup_key", "k" * 256),
        ("techniques", {"attack": ["T1090"]}),  # both frameworks, even when one has none
        ("techniques", {"attack": ["t1090"], "atlas": []}),
        ("techniques", {"attack": [], "atlas": ["T0024.002"]}),  # an ATLAS id starts with AML.
    ],
)
def test_alert_breaking_a_field_rule_is_rejected(field, bad_value):
    with pytest.raises(ContractViolation, match=f"^alert.schema.json: {field}[:/]"):
        validate_alert({**VALID_ALERT, field: bad_value})


def test_alert_rejects_unknown_fields():
    with pytest.raises(ContractViolation, match="Additional properties are not allowed"):
        validate_alert({**VALID_ALERT, "priority": 1})


def test_format_event_time_is_utc_with_exact_milliseconds():
    pattern = load_schema(ACCESS_EVENT_SCHEMA)["properties"]["event_time"]["pattern"]
    plus_one = timezone(timedelta(hours=1))
    formatted = format_event_time(datetime(2026, 11, 27, 9, 0, 0, 123999, tzinfo=plus_one))
    assert formatted == "2026-11-27T08:00:00.123Z"  # converted to UTC, truncated not rounded
    assert format_event_time(datetime(2026, 11, 27, 8, 0, 0)) == "2026-11-27T08:00:00.000Z"  # naive = UTC
    assert re.fullmatch(pattern, formatted)


def test_unparsable_schema_fails_naming_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "broken.schema.json").write_text('{\n  "type": "object",\n  oops\n}\n')
    monkeypatch.setattr(contracts, "SCHEMAS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"broken\.schema\.json:3: invalid JSON"):
        load_schema("broken.schema.json")


def test_an_impossible_calendar_date_is_rejected_like_the_jvm_parser_does():
    event = dict(VALID_EVENT)
    event["event_time"] = "2026-02-30T00:00:00.000Z"
    with pytest.raises(ContractViolation, match="date-time"):
        validate_event(event)


# Finding 9/4 of issue 11: every string field has a length bound and token counts a realistic maximum.
STRING_BOUNDS = {
    name: spec["maxLength"]
    for name, spec in load_schema(ACCESS_EVENT_SCHEMA)["properties"].items()
    if "string" in spec.get("type", []) and "maxLength" in spec
}


def test_every_string_field_of_the_event_contract_has_a_length_bound():
    properties = load_schema(ACCESS_EVENT_SCHEMA)["properties"]
    strings = {name for name, spec in properties.items() if "string" in spec.get("type", [])}
    assert strings == set(STRING_BOUNDS)
    assert properties["request_tags"]["items"]["maxLength"] and properties["request_tags"]["maxItems"]


@pytest.mark.parametrize("field", ["event_id", "account_id", "api_key_id", "org_id", "model", "endpoint",
                                   "payment_fingerprint", "user_agent"])  # fmt: skip
def test_an_identifier_longer_than_its_bound_is_rejected(field):
    bound = STRING_BOUNDS[field]
    validate_event({**VALID_EVENT, field: "é" * bound})  # the bound counts characters, not bytes
    with pytest.raises(ContractViolation, match=f"^{ACCESS_EVENT_SCHEMA}: {field}: .* is too long"):
        validate_event({**VALID_EVENT, field: "a" * (bound + 1)})


def test_a_hundred_kilobyte_account_id_is_rejected():
    with pytest.raises(ContractViolation, match="account_id: .* is too long"):
        validate_event({**VALID_EVENT, "account_id": "a" * 100_000})


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens"])
def test_token_counts_are_bounded_so_window_sums_cannot_overflow(field):
    maximum = load_schema(ACCESS_EVENT_SCHEMA)["properties"][field]["maximum"]
    validate_event({**VALID_EVENT, field: maximum})
    with pytest.raises(ContractViolation, match=f"{field}: 9223372036854775807 is greater than"):
        validate_event({**VALID_EVENT, field: 2**63 - 1})
    # A one-minute window would need this many events of one key to wrap a signed 64-bit sum: far more
    # than the job can read in a minute (about 10^4 events/s).
    assert (2**63 - 1) // maximum > 10**11
