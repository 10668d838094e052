"""Issue 11, findings 3, 4 and 9 through the real job: no single record blinds or poisons the windows.

Ordinary traffic with hostile records mixed in: events whose token counts would wrap a 64-bit sum,
bytes that are not UTF-8, a 100 KB account id, and (through Kafka) a record dated in the year 9999
that is dead-lettered anyway and valid events dated far ahead or decades back. Every window of the
ordinary traffic must hold exactly what ground truth says, nothing may turn late, and every hostile
record must be a dead letter with its reason.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from groundtruth import expected_aggregates, lake_aggregates, normalise

from pipelines.analyst import open_lake
from pipelines.contracts import ACCESS_EVENT_SCHEMA, load_schema
from pipelines.flink_job import run_job
from pipelines.generator import GeneratorConfig, encode_event, generate_records

pytestmark = pytest.mark.integration

MAX_TOKENS = load_schema(ACCESS_EVENT_SCHEMA)["properties"]["input_tokens"]["maximum"]
NOT_UTF8 = "not UTF-8"


def _traffic(start: datetime, minutes: int) -> list[dict]:
    config = GeneratorConfig(
        seed=13, accounts=60, start=start, duration=timedelta(minutes=minutes), scenarios=()
    )
    return [json.loads(record.value) for record in generate_records(config)]


def _bounded_records(events: list[dict]) -> tuple[dict[str, tuple[bytes, str]], list[dict]]:
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


def _assert_windows_exact(lake_dir, events: list[dict]) -> None:
    con = open_lake(lake_dir)
    try:
        late = con.execute("select count(*) from late_events").fetchone()[0]
        negative = con.execute("select count(*) from account_minute where input_tokens < 0").fetchone()[0]
    finally:
        con.close()
    assert late == 0
    assert negative == 0
    assert normalise(lake_aggregates(lake_dir)) == normalise(expected_aggregates(events))


def _assert_dead_letters(letters: list[dict], hostile: dict[str, tuple[bytes, str]]) -> None:
    by_raw = {letter["raw"]: letter["reason"] for letter in letters}
    assert len(letters) == len(by_raw) == len(hostile)
    for case, (raw, reason) in hostile.items():
        # Bytes that are not UTF-8 travel base64-encoded, so the dead letter loses nothing.
        key = base64.b64encode(raw).decode() if case == NOT_UTF8 else raw.decode()
        assert key in by_raw, case
        assert by_raw[key].startswith(reason), (case, by_raw[key])


def test_replay_dead_letters_overflowing_oversized_and_non_utf8_records(tmp_path):
    events = _traffic(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), minutes=3)
    hostile, at_bound = _bounded_records(events)
    lines = [encode_event(event) for event in events]
    lines += [raw for raw, _ in hostile.values()] + [encode_event(event) for event in at_bound]
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")

    lake_dir = tmp_path / "lake"
    assert run_job(["--source", "file", "--input", str(source), "--lake", str(lake_dir)]) == 0

    _assert_windows_exact(lake_dir, events + at_bound)
    con = open_lake(lake_dir)
    try:
        columns = [column[0] for column in con.execute("select * from dead_letters limit 0").description]
        letters = [
            dict(zip(columns, row, strict=True))
            for row in con.execute("select * from dead_letters").fetchall()
        ]
    finally:
        con.close()
    _assert_dead_letters(letters, hostile)
