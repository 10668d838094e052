"""The real chain: Apache Kafka (or a JSONL file) -> the PyFlink job on the MiniCluster -> Parquet -> DuckDB.

Ground truth is computed here, in plain Python, from the very events that were sent; the lake must
match it exactly.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from groundtruth import (
    consume_all,
    expected_aggregates,
    inversions,
    kafka_job_args,
    lake_aggregates,
    lake_event_ids,
    normalise,
)

from pipelines.lake.analyst import open_lake
from pipelines.stream.flink_job import JOB_RUN_DIR, run_job
from pipelines.traffic.generator import GeneratorConfig, generate_records
from pipelines.traffic.records import produce_to_kafka

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_kafka_to_lake_is_exact_with_out_of_order_events_and_dead_letters(
    kafka_bootstrap, unique_topic, tmp_path
):
    config = GeneratorConfig(
        seed=21, accounts=320, start=START, duration=timedelta(minutes=40), max_disorder_s=5, malformed=40
    )
    records = list(generate_records(config))
    valid = [json.loads(record.value) for record in records if not record.malformed]
    malformed = [record for record in records if record.malformed]
    assert len(valid) >= 10_000
    assert inversions(records) > 1000  # genuinely out of order, within the watermark's 10 s bound

    events_topic, dlq_topic = unique_topic(partitions=4), unique_topic(partitions=1)
    assert produce_to_kafka(records, kafka_bootstrap, events_topic) == len(records)

    lake_dir = tmp_path / "lake"
    args = kafka_job_args(
        kafka_bootstrap, events_topic, dlq_topic, lake_dir, (tmp_path / "checkpoints").as_uri()
    )
    code = run_job([*args, "--bounded", "--watermark-delay-s", "10"])
    assert code == 0

    archived = lake_event_ids(lake_dir)
    assert Counter(archived) == Counter(event["event_id"] for event in valid)  # each exactly once
    assert normalise(lake_aggregates(lake_dir)) == normalise(expected_aggregates(valid))

    letters = consume_all(kafka_bootstrap, dlq_topic, expected=len(malformed))
    assert len(records) == len(archived) + len(letters)
    assert sorted(letter["raw"] for letter in letters) == sorted(
        record.value.decode() for record in malformed
    )
    for letter in letters:
        assert letter["reason"] and letter["source_topic"] == events_topic
        assert letter["source_offset"] >= 0 and letter["source_partition"] in range(4)


# One line per rule of the contract; the reason must name what is wrong.
MALFORMED_CASES = [
    ("not json at all", "invalid JSON"),
    ("[1, 2, 3]", "invalid JSON: not an object"),
    ('{"event_id": "x"', "invalid JSON"),
    ("{}", "missing required field: event_id"),
    ('{"event_id": 7}', "wrong type: event_id must be a string"),
]
BROKEN_FIELDS = [
    ({"event_time": "2026-11-02 09:00:00"}, "invalid event_time"),
    ({"event_time": "2026-13-02T09:00:00.000Z"}, "invalid event_time"),
    ({"source_ip": "300.1.1.1"}, "invalid source_ip"),
    ({"source_ip": "example.com"}, "invalid source_ip"),
    ({"country": "usa"}, "invalid country"),
    ({"latitude": 95.0}, "invalid latitude"),
    ({"asn_type": "satellite"}, "invalid asn_type"),
    ({"input_tokens": "12"}, "wrong type: input_tokens must be an integer"),
    ({"input_tokens": 1.5}, "wrong type: input_tokens must be an integer"),
    ({"output_tokens": -1}, "invalid output_tokens: must be >= 0"),
    ({"status_code": None}, "missing required field: status_code"),
    ({"prompt_fingerprint": "XYZ"}, "invalid prompt_fingerprint"),
    ({"request_tags": "reasoning_elicitation"}, "wrong type: request_tags"),
]


def test_replay_archives_valid_events_dead_letters_violations_and_counts_late_events(tmp_path, capfd):
    config = GeneratorConfig(seed=3, accounts=300, start=START, duration=timedelta(minutes=30), scenarios=())
    events = [json.loads(record.value) for record in generate_records(config)]
    template = dict(events[0])
    lines = [json.dumps(event) for event in events]
    expected_reasons = [reason for _, reason in MALFORMED_CASES]
    lines += [text for text, _ in MALFORMED_CASES]
    for change, reason in BROKEN_FIELDS:
        lines.append(json.dumps({**template, "event_id": f"broken-{len(lines)}", **change}))
        expected_reasons.append(reason)
    # A valid event with fields outside the contract keeps them in the archive.
    extra = {**events[-1], "event_id": "with-extras", "gateway": {"region": "eu-west"}}
    lines.append(json.dumps(extra))
    # Events from the first minutes, arriving after ~30 minutes of traffic: far behind the watermark.
    late = [{**event, "event_id": f"late-{index}"} for index, event in enumerate(events[:5])]
    lines += [json.dumps(event) for event in late]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")

    lake_dir = tmp_path / "lake"
    logged_before = {log: log.stat().st_size for log in JOB_RUN_DIR.glob("flink-*.log")}
    assert run_job(["--source", "file", "--input", str(source), "--lake", str(lake_dir)]) == 0
    # The JVM's INFO chatter (Hadoop's CodecPool per Parquet file, Flink's start-up) is in the job's
    # Flink log, not on the console.
    console = capfd.readouterr()
    assert " INFO " not in console.out + console.err
    logged_now = "".join(
        log.read_bytes()[logged_before.get(log, 0) :].decode(errors="replace")
        for log in JOB_RUN_DIR.glob("flink-*.log")
    )
    assert "CodecPool" in logged_now

    con = open_lake(lake_dir)
    try:
        reasons = [row[0] for row in con.execute("select reason from dead_letters order by raw").fetchall()]
        extras = con.execute("select extras from events where event_id = 'with-extras'").fetchall()
        archived = con.execute("select count(*) from events").fetchall()[0][0]
        late_ids = [
            row[0] for row in con.execute("select event_id from late_events order by event_id").fetchall()
        ]
    finally:
        con.close()
    assert len(reasons) == len(expected_reasons)
    for expected in expected_reasons:
        assert any(reason.startswith(expected) for reason in reasons), expected
    assert json.loads(extras[0][0]) == {"gateway": {"region": "eu-west"}}
    assert archived == len(events) + 1 + len(late)  # the archive keeps late events too
    assert late_ids == sorted(event["event_id"] for event in late)
    # The windows hold exactly the on-time events: nothing late was aggregated, nothing else was dropped.
    assert normalise(lake_aggregates(lake_dir)) == normalise(expected_aggregates(events + [extra]))
