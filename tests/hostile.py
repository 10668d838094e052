"""Hostile records (issue 11, findings 3, 4 and 9) and the dead letters they must become."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from pipelines.stream.contracts import ACCESS_EVENT_SCHEMA, format_event_time, load_schema
from pipelines.traffic.records import encode_event

MAX_TOKENS = load_schema(ACCESS_EVENT_SCHEMA)["properties"]["input_tokens"]["maximum"]
NOT_UTF8 = "not UTF-8"
# The time bounds the job measures against each record's arrival (the broker's log-append time).
AFTER_ARRIVAL = "event_time out of bounds: more than 300 s after the record arrived"
BEFORE_ARRIVAL = "event_time out of bounds: more than 63072000 s before the record arrived"


def bounded_records(events: list[dict]) -> tuple[dict[str, tuple[bytes, str]], list[dict]]:
    """({case: (raw record, dead-letter reason)}, the events at the token bound, all in the newest minute).

    Two events at the largest token count the contract allows, in one account-minute, must be summed
    exactly; two at 2^63-1 (which summed to -2) and the records that break a length bound or UTF-8 must
    be dead letters.
    """
    newest = max(event["event_time"] for event in events)
    template = {**events[0], "account_id": "acct-hostile", "event_time": newest}

    def event(**changes) -> bytes:
        return encode_event({**template, **changes})

    hostile = {
        "overflowing tokens 1": (event(event_id="o1", input_tokens=2**63 - 1), "invalid input_tokens"),
        "overflowing tokens 2": (event(event_id="o2", input_tokens=2**63 - 1), "invalid input_tokens"),
        NOT_UTF8: (
            event(event_id="u1", user_agent="ua").replace(b'"ua"', b'"u\xffa"'),
            "invalid UTF-8 at byte",
        ),
        "100 KB account id": (event(event_id="l1", account_id="a" * 100_000), "invalid account_id"),
    }
    at_bound = [{**template, "event_id": f"max-{n}", "input_tokens": MAX_TOKENS} for n in range(2)]
    return hostile, at_bound


def implausible_time_records(events: list[dict]) -> dict[str, tuple[bytes, str]]:
    """{case: (raw record, dead-letter reason)} for event times far from the record's arrival (now)."""
    template = {**events[0], "account_id": "acct-hostile"}
    a_day_ahead = format_event_time(datetime.now(UTC) + timedelta(days=1))
    return {
        # A dead letter anyway (no account_id), but its event time reached the watermark: every valid
        # event after it was late, and no window after it held anything.
        "invalid, dated 9999": (
            encode_event({"event_id": "t1", "event_time": "9999-12-31T23:59:59.999Z"}),
            "missing required field: account_id",
        ),
        "valid, dated 9999": (
            encode_event({**template, "event_id": "t2", "event_time": "9999-12-31T23:59:59.999Z"}),
            AFTER_ARRIVAL,
        ),
        "valid, a day ahead": (
            encode_event({**template, "event_id": "t3", "event_time": a_day_ahead}),
            AFTER_ARRIVAL,
        ),
        "valid, from 1990": (
            encode_event({**template, "event_id": "t4", "event_time": "1990-01-01T00:00:00.000Z"}),
            BEFORE_ARRIVAL,
        ),
    }


def assert_dead_letters(letters: list[dict], hostile: dict[str, tuple[bytes, str]]) -> None:
    """Each hostile record is exactly one dead letter, with its raw bytes and a reason saying why."""
    by_raw = {letter["raw"]: letter["reason"] for letter in letters}
    assert len(letters) == len(by_raw) == len(hostile)
    for case, (raw, reason) in hostile.items():
        # Bytes that are not UTF-8 travel base64-encoded, so the dead letter loses nothing.
        key = base64.b64encode(raw).decode() if case == NOT_UTF8 else raw.decode()
        assert key in by_raw, case
        assert by_raw[key].startswith(reason), (case, by_raw[key])
