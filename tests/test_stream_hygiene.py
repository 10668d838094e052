"""Issue 11, findings 3, 4 and 9 through the real job: no single record blinds or poisons the windows.

Ordinary traffic with hostile records mixed in: events whose token counts would wrap a 64-bit sum,
bytes that are not UTF-8, a 100 KB account id, and (through Kafka) a record dated in the year 9999
that is dead-lettered anyway and valid events dated far ahead or decades back. Every window of the
ordinary traffic must hold exactly what ground truth says, nothing may turn late, and every hostile
record must be a dead letter with its reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from groundtruth import consume_all, expected_aggregates, kafka_job_args, lake_aggregates, normalise
from hostile import assert_dead_letters, bounded_records, implausible_time_records

from pipelines.lake.analyst import open_lake
from pipelines.stream.flink_job import run_job
from pipelines.traffic.generator import GeneratorConfig, generate_records
from pipelines.traffic.records import Record, encode_event, produce_to_kafka

pytestmark = pytest.mark.integration


def _traffic(start: datetime, minutes: int) -> list[dict]:
    config = GeneratorConfig(
        seed=13, accounts=60, start=start, duration=timedelta(minutes=minutes), scenarios=()
    )
    return [json.loads(record.value) for record in generate_records(config)]


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


def test_replay_dead_letters_overflowing_oversized_and_non_utf8_records(tmp_path):
    events = _traffic(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), minutes=3)
    hostile, at_bound = bounded_records(events)
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
    assert_dead_letters(letters, hostile)


def test_no_record_moves_the_watermark_past_its_arrival_and_implausible_times_are_dead_letters(
    kafka_bootstrap, unique_topic, tmp_path
):
    # Traffic of the last minutes: the broker stamps each record's arrival (log-append time) now.
    events = _traffic(datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=8), minutes=6)
    hostile, at_bound = bounded_records(events)
    hostile |= implausible_time_records(events)
    # The hostile records arrive early in the stream, so a watermark they moved would blind every later
    # window; the events at the token bound arrive last, in the newest window, which must still be open.
    cut = len(events) // 10

    def records(items: list[dict | bytes]) -> list[Record]:
        raws = [item if isinstance(item, bytes) else encode_event(item) for item in items]
        return [Record(key="k", value=raw, event_time_ms=0, malformed=False) for raw in raws]

    stream = records([*events[:cut], *(raw for raw, _ in hostile.values()), *events[cut:], *at_bound])
    topic, dlq_topic = unique_topic(partitions=1), unique_topic(partitions=1)
    assert produce_to_kafka(stream, kafka_bootstrap, topic) == len(stream)

    lake_dir = tmp_path / "lake"
    args = kafka_job_args(kafka_bootstrap, topic, dlq_topic, lake_dir, (tmp_path / "checkpoints").as_uri())
    assert run_job([*args, "--bounded"]) == 0

    _assert_windows_exact(lake_dir, events + at_bound)
    assert_dead_letters(consume_all(kafka_bootstrap, dlq_topic, expected=len(hostile)), hostile)
