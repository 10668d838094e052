"""Exactly once under crashes: SIGKILL the job mid-stream and resume it, restart the broker under it.

Both compare the lake with ground truth computed here: no event lost, none counted twice.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from groundtruth import (
    TAIL,
    WORKLOAD,
    assert_exact,
    expected_aggregates,
    kafka_job_args,
    lake_event_ids,
    topic_size,
    workload_complete,
)
from streamjob import RunningJob, wait_for

from pipelines.infra import kafka_broker
from pipelines.stream.flink_job import latest_checkpoint
from pipelines.traffic.generator import generate_records
from pipelines.traffic.records import produce_to_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def stream(kafka_bootstrap, unique_topic, tmp_path):
    events_topic, dlq_topic = unique_topic(partitions=4), unique_topic(partitions=1)
    lake_dir, checkpoints = tmp_path / "lake", (tmp_path / "checkpoints").as_uri()
    args = kafka_job_args(kafka_bootstrap, events_topic, dlq_topic, lake_dir, checkpoints)
    args += ["--checkpoint-interval-s", "2"]
    return {
        "topic": events_topic,
        "lake": lake_dir,
        "checkpoints": checkpoints,
        "args": args,
        "tmp": tmp_path,
    }


def test_sigkill_mid_stream_then_resume_from_checkpoint_is_exact(kafka_bootstrap, stream):
    records = list(generate_records(WORKLOAD))
    workload = [json.loads(record.value) for record in records]
    half = len(records) // 2
    job = RunningJob(stream["args"], stream["tmp"] / "job-1.log")
    try:
        produce_to_kafka(records[:half], kafka_bootstrap, stream["topic"])
        wait_for(lambda: lake_event_ids(stream["lake"]), "the first committed checkpoint", job)
        # Kill while the second half is streaming in.
        producer = threading.Thread(
            target=produce_to_kafka,
            args=(records[half:], kafka_bootstrap, stream["topic"]),
            # Slow enough (~2.6 s for the half) that the kill lands while it is still arriving.
            kwargs={"rate": 500},
        )
        producer.start()
        # The crash lands mid-stream: once a good part of the second half is on the topic.
        wait_for(lambda: topic_size(kafka_bootstrap, stream["topic"]) > half + 500, "the second half", job)
    finally:
        job.kill(signal.SIGKILL)
    committed_at_kill = len(lake_event_ids(stream["lake"]))
    checkpoint = latest_checkpoint(stream["checkpoints"])
    assert checkpoint is not None
    producer.join()

    # The tail goes in before the restart: the first job never read it, so the resumed job always has
    # something new to commit, even if the first one committed the whole workload before it died.
    produce_to_kafka(generate_records(TAIL), kafka_bootstrap, stream["topic"])

    restarted = time.monotonic()
    job = RunningJob([*stream["args"], "--resume-from", checkpoint], stream["tmp"] / "job-2.log")
    try:
        wait_for(
            lambda: len(lake_event_ids(stream["lake"])) > committed_at_kill,
            "the first commit after resume",
            job,
        )
        recovery_s = time.monotonic() - restarted
        expected = expected_aggregates(workload)
        ids = {event["event_id"] for event in workload}
        wait_for(lambda: workload_complete(stream["lake"], ids, expected), "every workload window", job)
    finally:
        job.kill(signal.SIGTERM)
    assert_exact(stream["lake"], workload)
    print(f"recovery after SIGKILL: first commit {recovery_s:.1f} s after restart")


def test_broker_restart_mid_stream_the_job_recovers_by_itself_exactly(kafka_bootstrap, stream):
    records = list(generate_records(WORKLOAD))
    workload = [json.loads(record.value) for record in records]
    half = len(records) // 2
    job = RunningJob(stream["args"], stream["tmp"] / "job.log")
    try:
        produce_to_kafka(records[:half], kafka_bootstrap, stream["topic"])
        wait_for(lambda: lake_event_ids(stream["lake"]), "the first committed checkpoint", job)
        kafka_broker.stop()
        # The scenario itself, not a synchronisation: the broker stays down across a checkpoint interval.
        time.sleep(3)
        kafka_broker.start()
        produce_to_kafka(records[half:], kafka_bootstrap, stream["topic"])
        produce_to_kafka(generate_records(TAIL), kafka_bootstrap, stream["topic"])
        expected = expected_aggregates(workload)
        ids = {event["event_id"] for event in workload}
        wait_for(lambda: workload_complete(stream["lake"], ids, expected), "every workload window", job)
    finally:
        job.kill(signal.SIGTERM)
    assert_exact(stream["lake"], workload)
