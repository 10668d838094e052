"""Ground truth for the aggregation job: what the lake must hold, computed in plain Python from the
events that were sent, and the same figures read back from the lake through DuckDB."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from pipelines.lake.analyst import open_lake
from pipelines.traffic.generator import GeneratorConfig


def _event_time(event: dict) -> datetime:
    return datetime.strptime(event["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ")


def _minute(event: dict) -> datetime:
    return _event_time(event).replace(second=0, microsecond=0)


def expected_aggregates(events: list[dict]) -> dict[str, dict]:
    """What each lake table must hold, keyed like its rows, computed without Flink."""
    per_account: dict[tuple, dict] = defaultdict(
        lambda: {
            "requests": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "ips": set(),
            "countries": set(),
            "reasoning": 0,
            "errors": 0,
        }
    )
    per_country: Counter = Counter()
    per_ip: Counter = Counter()
    per_asn_accounts: dict[tuple, set] = defaultdict(set)
    for event in events:
        account = per_account[(event["account_id"], _minute(event))]
        account["requests"] += 1
        account["input_tokens"] += event["input_tokens"]
        account["output_tokens"] += event["output_tokens"]
        account["ips"].add(event["source_ip"])
        if event.get("country") is not None:
            account["countries"].add(event["country"])
        account["reasoning"] += "reasoning_elicitation" in (event.get("request_tags") or [])
        account["errors"] += event["status_code"] >= 400
        per_country[(event.get("country"), _minute(event))] += 1
        per_ip[(event["source_ip"], _minute(event))] += 1
        per_asn_accounts[(event.get("asn"), event.get("asn_type"), _minute(event))].add(event["account_id"])
    return {
        "account_minute": {
            key: (
                a["requests"],
                a["input_tokens"],
                a["output_tokens"],
                len(a["ips"]),
                len(a["countries"]),
                a["reasoning"],
                a["errors"],
            )
            for key, a in per_account.items()
        },
        "country_minute": dict(per_country),
        "ip_minute": dict(per_ip),
        "asn_minute": {key: len(accounts) for key, accounts in per_asn_accounts.items()},
    }


def lake_aggregates(lake_dir: Path) -> dict[str, dict]:
    con = open_lake(lake_dir)
    try:

        def rows(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()

        return {
            "account_minute": {
                (row[0], row[1]): tuple(row[2:])
                for row in rows(
                    "select account_id, window_start, requests, input_tokens, output_tokens, distinct_ips,"
                    " distinct_countries, reasoning_requests, error_requests from account_minute"
                )
            },
            "country_minute": {
                (c, s): n for c, s, n in rows("select country, window_start, requests from country_minute")
            },
            # One IP may appear under more than one (asn, asn_type) row; the test sums them per IP.
            "ip_minute": {
                (ip, s): n
                for ip, s, n in rows(
                    "select source_ip, window_start, sum(requests) from ip_minute group by all"
                )
            },
            "asn_minute": {
                (a, t, s): n
                for a, t, s, n in rows(
                    "select asn, asn_type, window_start, distinct_accounts from asn_minute"
                )
            },
        }
    finally:
        con.close()


def normalise(aggregates: dict[str, dict]) -> dict[str, dict]:
    """Tuples of values, so a lake row (tuple) and a computed row compare equal."""
    return {
        table: {key: tuple(v) if isinstance(v, list | tuple) else v for key, v in rows.items()}
        for table, rows in aggregates.items()
    }


def lake_event_ids(lake_dir: Path) -> list[str]:
    con = open_lake(lake_dir)
    try:
        return [row[0] for row in con.execute("select event_id from events").fetchall()]
    finally:
        con.close()


def inversions(records) -> int:
    """How many records arrive with an event time earlier than one already sent."""
    latest, count = 0, 0
    for record in records:
        count += record.event_time_ms < latest
        latest = max(latest, record.event_time_ms)
    return count


def consume_all(bootstrap: str, topic: str, expected: int, deadline_s: float = 60) -> list[dict]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed",
        consumer_timeout_ms=2000,
    )
    messages: list[dict] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages += [json.loads(message.value) for message in consumer]
    finally:
        consumer.close()
    return messages


def kafka_job_args(
    bootstrap: str, topic: str, dlq_topic: str, lake_dir: Path, checkpoint_uri: str
) -> list[str]:
    """The aggregation job's arguments for a test's own topics, lake and checkpoints."""
    return [
        "--source", "kafka", "--bootstrap-servers", bootstrap, "--topic", topic, "--dlq-topic", dlq_topic,
        "--group-id", f"{topic}-job", "--lake", str(lake_dir), "--checkpoint-dir", checkpoint_uri,
    ]  # fmt: skip


def topic_size(bootstrap: str, topic: str) -> int:
    """Messages written to the topic so far (sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


# A workload for stream scenarios (crashes, restarts, rescaling), and later traffic that moves the
# watermark past it so that every workload window closes.
START = datetime(2026, 11, 3, 6, 0, tzinfo=UTC)
WORKLOAD = GeneratorConfig(seed=31, accounts=200, start=START, duration=timedelta(minutes=20), scenarios=())
# Later traffic that moves the watermark past the workload, so every workload window closes.
TAIL = GeneratorConfig(
    seed=32, accounts=60, start=START + timedelta(minutes=25), duration=timedelta(minutes=3), scenarios=()
)


def before(aggregates: dict[str, dict], cutoff: datetime) -> dict[str, dict]:
    """Rows whose window starts before cutoff (the window start is the last element of each key)."""
    naive = cutoff.replace(tzinfo=None)
    return {
        table: {key: value for key, value in rows.items() if key[-1] < naive}
        for table, rows in aggregates.items()
    }


def workload_complete(lake_dir: Path, workload_ids: set[str], expected: dict) -> bool:
    archived = [event_id for event_id in lake_event_ids(lake_dir) if event_id in workload_ids]
    if len(set(archived)) < len(workload_ids):
        return False
    cutoff = START + WORKLOAD.duration
    return all(
        before(lake_aggregates(lake_dir), cutoff)[table].keys() >= rows.keys()
        for table, rows in expected.items()
    )


def assert_exact(lake_dir: Path, workload: list[dict]) -> None:
    workload_ids = {event["event_id"] for event in workload}
    archived = Counter(event_id for event_id in lake_event_ids(lake_dir) if event_id in workload_ids)
    assert archived == Counter(workload_ids)  # every workload event exactly once
    cutoff = START + WORKLOAD.duration
    assert normalise(before(lake_aggregates(lake_dir), cutoff)) == normalise(expected_aggregates(workload))
