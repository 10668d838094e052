"""Issue 11's fault-injection soak: every failure the suite tests one at a time, in one run.

Steady attack traffic with hostile records mixed in, in three bursts, through the streaming job while
the broker is restarted under it and the job is SIGKILLed and resumed from its checkpoint; then
`detect` over the resulting lake, twice, with the audit log failing on the first run. In the end every
closed window equals ground truth, every signal and incident change is in the state, the audit log and
the JSONL sink exactly once (and `audit verify` passes), and every hostile record is one dead letter
with its reason.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time

import pytest
from groundtruth import (
    TAIL,
    WORKLOAD,
    assert_exact,
    consume_all,
    expected_aggregates,
    kafka_job_args,
    lake_event_ids,
    topic_size,
    workload_complete,
)
from hostile import assert_dead_letters, bounded_records, implausible_time_records
from lakefixture import read_jsonl
from signalfixture import Engine, assert_each_once
from streamjob import RunningJob, wait_for

from pipelines.commands import cli
from pipelines.incidents.alert_state import AlertStore
from pipelines.infra import kafka_broker
from pipelines.stream.flink_job import latest_checkpoint
from pipelines.traffic.generator import SCENARIOS, generate_records
from pipelines.traffic.records import Record, encode_event, produce_to_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# WORKLOAD's window (so TAIL closes it and assert_exact's cutoff holds) with every attack scenario, so
# that detect has signals and incidents to lose or double; 60 accounts keep it to ~5,000 events.
ATTACKS = dataclasses.replace(WORKLOAD, accounts=60, scenarios=SCENARIOS)
BURSTS = 3
# Slow enough that the SIGKILL lands while the last burst is still arriving.
LAST_BURST_RATE = 500
EVERY_SINK = "    - {name: file, type: jsonl, path: routed.jsonl, min_severity: info}\n"


def _hostile_stream() -> tuple[list[list[Record]], list[dict], dict[str, tuple[bytes, str]]]:
    """(the bursts to produce, the valid events among them, {hostile case: (raw, reason)})."""
    records = list(generate_records(ATTACKS))
    events = [json.loads(record.value) for record in records]
    hostile, at_bound = bounded_records(events)
    hostile |= implausible_time_records(events)
    raws = [raw for raw, _ in hostile.values()]
    size = -(-len(records) // BURSTS)
    bursts = []
    for index in range(BURSTS):
        burst = records[index * size : (index + 1) * size]
        # Keyed like the events at the bound, so they share a partition and arrive before them.
        burst += [Record("acct-hostile", raw, 0, True) for raw in raws[index::BURSTS]]
        bursts.append(burst)
    bursts[-1] += [Record(event["account_id"], encode_event(event), 0, False) for event in at_bound]
    return bursts, events + at_bound, hostile


def test_stream_and_detect_under_every_fault_lose_and_double_nothing(
    kafka_bootstrap, unique_topic, tmp_path, capsys
):
    began = time.monotonic()
    bursts, workload, hostile = _hostile_stream()
    topic, dlq_topic = unique_topic(partitions=4), unique_topic(partitions=1)
    lake_dir, checkpoints = tmp_path / "lake", (tmp_path / "checkpoints").as_uri()
    args = [*kafka_job_args(kafka_bootstrap, topic, dlq_topic, lake_dir, checkpoints)]
    args += ["--checkpoint-interval-s", "2"]

    job = RunningJob(args, tmp_path / "job-1.log")
    try:
        produce_to_kafka(bursts[0], kafka_bootstrap, topic)
        wait_for(lambda: lake_event_ids(lake_dir), "the first committed checkpoint", job)

        committed_before_restart = len(lake_event_ids(lake_dir))
        kafka_broker.stop()
        # The scenario itself, not a synchronisation: the broker stays down across a checkpoint interval.
        time.sleep(3)
        kafka_broker.start()
        produce_to_kafka(bursts[1], kafka_bootstrap, topic)
        wait_for(
            lambda: len(lake_event_ids(lake_dir)) > committed_before_restart,
            "a commit after the broker restart",
            job,
        )

        produced = topic_size(kafka_bootstrap, topic)
        producer = threading.Thread(
            target=produce_to_kafka,
            args=(bursts[2], kafka_bootstrap, topic),
            kwargs={"rate": LAST_BURST_RATE},
        )
        producer.start()
        wait_for(lambda: topic_size(kafka_bootstrap, topic) > produced + 200, "the last burst", job)
    finally:
        job.kill(signal.SIGKILL)
    producer.join()
    checkpoint = latest_checkpoint(checkpoints)
    assert checkpoint is not None

    job = RunningJob([*args, "--resume-from", checkpoint], tmp_path / "job-2.log")
    try:
        produce_to_kafka(generate_records(TAIL), kafka_bootstrap, topic)
        ids = {event["event_id"] for event in workload}
        expected = expected_aggregates(workload)
        wait_for(lambda: workload_complete(lake_dir, ids, expected), "every workload window", job)
    finally:
        job.kill(signal.SIGTERM)
    streamed_s = time.monotonic() - began

    assert_exact(lake_dir, workload)
    assert_dead_letters(consume_all(kafka_bootstrap, dlq_topic, expected=len(hostile)), hostile)

    engine = Engine(tmp_path, sinks=EVERY_SINK)
    detect = ["detect", "--lake", str(lake_dir), "--config", str(engine.config.path)]
    (tmp_path / "audit.jsonl").mkdir()  # not writable as a file: the audit append fails
    assert cli.main(detect) == 1
    assert "nothing was recorded" in capsys.readouterr().err
    with AlertStore.open(tmp_path / "state.duckdb") as store:
        assert store.list_alerts() == [] and store.list_incidents() == []
    assert engine.routed() == []

    (tmp_path / "audit.jsonl").rmdir()
    signals_file, incidents_file = tmp_path / "signals.jsonl", tmp_path / "incidents.jsonl"
    assert cli.main([*detect, "--signals", str(signals_file), "--output", str(incidents_file)]) == 0
    signals = read_jsonl(signals_file)
    changes = [(change["incident_id"], change["change"]) for change in read_jsonl(incidents_file)]
    assert signals and changes  # the attack scenarios were found: there was something to lose or double
    assert_each_once(engine, (s["alert_id"] for s in signals), changes)
    print(f"soak: streamed in {streamed_s:.0f} s, {time.monotonic() - began:.0f} s in all")
