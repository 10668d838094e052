"""The seeded benchmark workload: generated once, cached, and pre-loaded into the real local broker."""

from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from pipelines.infra import kafka_broker, paths
from pipelines.traffic.generator import GeneratorConfig, generate_records

TOPIC_LOADER = Path(__file__).resolve().parent / "TopicLoader.java"
# Partitions like the project's access-events topic, so every consumer reads the same layout.
PARTITIONS = kafka_broker.PROJECT_TOPICS[kafka_broker.EVENTS_TOPIC]
# The Python generator makes ~20K events/s here; bigger workloads tile this many generated events
# (TopicLoader shifts each copy by whole days), so a 5M run does not spend minutes generating.
BASE_EVENTS_MAX = 500_000
BASE_START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Workload:
    seed: int
    events: int
    accounts: int

    @property
    def base_events(self) -> int:
        return min(self.events, BASE_EVENTS_MAX)

    @property
    def topic(self) -> str:
        return f"bench-s{self.seed}-a{self.accounts}-n{self.events}"

    def generator_config(self) -> GeneratorConfig:
        # A whole day of traffic is more than any base needs; only the first base_events are taken,
        # so each tiled copy stays within one day.
        return GeneratorConfig(
            seed=self.seed, accounts=self.accounts, start=BASE_START, duration=timedelta(hours=23)
        )


def base_file(workload: Workload, cache_dir: Path) -> Path:
    """'key TAB json' lines of the first base_events generated events (cached by seed and size)."""
    path = cache_dir / f"base-s{workload.seed}-a{workload.accounts}-n{workload.base_events}.tsv"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb", buffering=1 << 20) as handle:
        records = generate_records(workload.generator_config())
        for record in itertools.islice(records, workload.base_events):
            handle.write(record.key.encode() + b"\t" + record.value + b"\n")
    partial.rename(path)
    return path


def topic_size(bootstrap: str, topic: str) -> int | None:
    """Records in the topic (sum of end offsets), or None if it does not exist."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="usagewatch-bench")
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()


def load_topic(
    workload: Workload,
    bootstrap: str,
    cache_dir: Path,
    replication: int = 1,
    topic_configs: dict[str, str] | None = None,
) -> dict:
    """Make workload.topic hold exactly workload.events records; reuse it when it already does.

    replication and topic_configs apply when the topic is created (a cluster's 3 replicas, 2 in sync).
    """
    existing = topic_size(bootstrap, workload.topic)
    if existing == workload.events:
        return {"topic": workload.topic, "reused": True}
    if existing is not None:  # a load that was interrupted: start over
        with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="usagewatch-bench") as admin:
            admin.delete_topics([workload.topic])
        _wait_for(lambda: topic_size(bootstrap, workload.topic) is None, f"deletion of {workload.topic}")
    base = base_file(workload, cache_dir)
    kafka_broker.ensure_topics(
        bootstrap, {workload.topic: PARTITIONS}, replication=replication, configs=topic_configs
    )
    command = [
        "java",
        "-Xmx512m",
        "-cp",
        str(paths.KAFKA_LIBS_DIR / "*"),
        str(TOPIC_LOADER),
        str(base),
        workload.topic,
        bootstrap,
        str(workload.events),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    loaded = topic_size(bootstrap, workload.topic)
    if loaded != workload.events:
        raise RuntimeError(f"{workload.topic} holds {loaded} records after loading {workload.events}")
    return {
        "topic": workload.topic,
        "reused": False,
        "load_seconds": round(seconds, 1),
        "load_events_per_s": round(workload.events / seconds),
    }


def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)
