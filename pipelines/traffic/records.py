"""What goes on the wire, for both traffic profiles: encoded records, malformed ones mixed in from their own
random stream, JSONL files, a Kafka producer with pacing, and producer-side pseudonymisation."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from pipelines.stream.contracts import ACCESS_EVENT_SCHEMA, load_schema
from pipelines.stream.privacy import Privacy

MALFORMED_KINDS = ("invalid_json", "missing_field", "wrong_type", "negative_tokens")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Record(NamedTuple):
    key: str
    value: bytes
    event_time_ms: int
    malformed: bool


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def encode_event(event: dict) -> bytes:
    return _COMPACT_JSON.encode(event).encode()


def _record(event: dict) -> Record:
    event_time_ms = (datetime.fromisoformat(event["event_time"]) - EPOCH) // timedelta(milliseconds=1)
    return Record(event["account_id"], encode_event(event), event_time_ms, False)


def _malformed_value(event: dict, kind: str, rng: random.Random) -> bytes:
    broken = dict(event, event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
    if kind == "invalid_json":
        text = encode_event(broken)
        return text[: len(text) // 2]  # cut mid-object: never parses
    if kind == "missing_field":
        del broken[rng.choice(load_schema(ACCESS_EVENT_SCHEMA)["required"])]
    elif kind == "wrong_type":
        broken["input_tokens"] = "abc"
    else:
        broken["output_tokens"] = -rng.randint(1, 500)
    return encode_event(broken)


def records_with_malformed(
    timed_events: Iterable[tuple[int, dict]], seed: int, start_ms: int, end_ms: int, malformed: int
) -> Iterator[Record]:
    """Encoded (event time, event) pairs with `malformed` broken records mixed in at random times.

    The malformed records come from their own random stream, so the valid events are identical with
    or without them.
    """
    rng = random.Random(f"{seed}:malformed")
    due_ms = sorted(rng.randrange(start_ms, end_ms) for _ in range(malformed))
    made = 0
    last: tuple[int, dict] | None = None
    for t_ms, event in timed_events:
        yield Record(event["account_id"], encode_event(event), t_ms, False)
        last = (t_ms, event)
        while made < len(due_ms) and due_ms[made] <= t_ms:
            yield Record(
                event["account_id"], _malformed_value(event, MALFORMED_KINDS[made % 4], rng), t_ms, True
            )
            made += 1
    if made < len(due_ms) and last is None:
        raise ValueError("no events generated, so there is nothing to derive malformed records from")
    while made < len(due_ms):
        t_ms, event = last
        yield Record(event["account_id"], _malformed_value(event, MALFORMED_KINDS[made % 4], rng), t_ms, True)
        made += 1


def write_jsonl(records: Iterable[Record], path: Path) -> tuple[int, int]:
    """Write one record per line; returns (valid, malformed) counts."""
    counts = [0, 0]
    with path.open("wb", buffering=1 << 20) as handle:
        for record in records:
            handle.write(record.value + b"\n")
            counts[record.malformed] += 1
    return counts[0], counts[1]


def produce_to_kafka(
    events: Iterable[dict | Record],
    bootstrap: str,
    topic: str,
    rate: float = 0,
    *,
    time_compression: float = 0,
) -> int:
    """Send events (dicts or pre-encoded Records) keyed by account_id; returns the count acknowledged.

    rate caps messages per second (0 = as fast as possible); time_compression K paces sends so event
    time advances K times faster than the wall clock (0 = no pacing).
    """
    from kafka import KafkaProducer  # imported here so file-only generation never needs the client

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        # Small JSON messages are cheap only in bulk: big batches, and gzip (repetitive keys compress
        # well) roughly doubled throughput on a busy 2-core machine versus uncompressed.
        linger_ms=50,
        batch_size=1024 * 1024,
        compression_type="gzip",
        max_block_ms=30_000,
    )
    acknowledged, failures = 0, []

    def on_success(_metadata) -> None:
        nonlocal acknowledged
        acknowledged += 1

    sent = 0
    started = time.monotonic()
    first_event_ms = None
    try:
        for item in events:
            record = item if isinstance(item, Record) else _record(item)
            wait_until = started + (sent / rate if rate > 0 else 0)
            if time_compression > 0:
                first_event_ms = record.event_time_ms if first_event_ms is None else first_event_ms
                wait_until = max(
                    wait_until, started + (record.event_time_ms - first_event_ms) / 1000 / time_compression
                )
            delay = wait_until - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the producer, not synchronisation
            future = producer.send(topic, key=record.key.encode(), value=record.value)
            future.add_callback(on_success)
            future.add_errback(failures.append)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} of {sent} messages to {topic} failed, first: {failures[0]!r}")
    return acknowledged


def pseudonymised(records: Iterable[Record], privacy: Privacy) -> Iterator[Record]:
    """Pseudonymise valid events as a producer would before they leave for Kafka (see privacy.py)."""
    for record in records:
        if record.malformed:
            yield record
        else:
            yield record._replace(value=encode_event(privacy.apply(json.loads(record.value))))
