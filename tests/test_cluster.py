"""The job on a real cluster: a Flink session cluster (1 JobManager, 2 TaskManagers) and a 3-broker Kafka.

Against ground truth computed here: the cluster's lake equals the MiniCluster's; stop-with-savepoint
and resume at a higher parallelism, a Kafka broker SIGKILLed, a TaskManager SIGKILLed - each mid-stream,
and each with every workload event exactly once in the lake and every aggregate exact.
Timings and memory are printed (run with -s to see them); they are measurements, not assertions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
from groundtruth import (
    START,
    TAIL,
    WORKLOAD,
    assert_exact,
    before,
    expected_aggregates,
    lake_aggregates,
    lake_event_ids,
    normalise,
    workload_complete,
)

from pipelines.infra import cluster, kafka_broker, paths
from pipelines.stream.flink_job import job_command
from pipelines.traffic.generator import generate_records
from pipelines.traffic.records import produce_to_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 180.0
# Ports away from the dev broker (9092/9093), a dev cluster (8081/6123/19092-19097) and Docker (29092).
SPEC_PORTS = {"rest_port": 18381, "rpc_port": 16323, "kafka_port": 39092}
TERMINAL_STATES = {"FAILED", "CANCELED", "FINISHED"}

measurements: dict[str, str] = {}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    spec = cluster.ClusterSpec(root=tmp_path_factory.mktemp("cluster"), **SPEC_PORTS)
    began = time.monotonic()
    try:
        started = cluster.up(spec)
        measurements["start-up (3 Kafka nodes, then JobManager + 2 TaskManagers)"] = (
            f"{time.monotonic() - began:.1f} s (Kafka {started.kafka_seconds:.1f} s,"
            f" Flink {started.flink_seconds:.1f} s)"
        )
        yield spec
    finally:
        cluster.down(spec)
        print("\ncluster measurements:\n" + "\n".join(f"  {k}: {v}" for k, v in measurements.items()))


@pytest.fixture
def stream(spec, tmp_path):
    """Topics of this test (3 replicas, 2 in sync) and the job's arguments for them."""
    events_topic, dlq_topic = f"cluster-{uuid.uuid4().hex[:8]}", f"cluster-dlq-{uuid.uuid4().hex[:8]}"
    kafka_broker.ensure_topics(
        spec.bootstrap_servers,
        {events_topic: 4, dlq_topic: 1},
        replication=cluster.KAFKA_REPLICATION,
        configs={"min.insync.replicas": str(cluster.KAFKA_MIN_INSYNC)},
    )

    def job_args(lake_dir, parallelism: int = 2, group: str = "cluster", jars: str = "none") -> list[str]:
        return [
            "--source", "kafka",
            "--bootstrap-servers", spec.bootstrap_servers,
            "--topic", events_topic,
            "--dlq-topic", dlq_topic,
            "--group-id", f"{events_topic}-{group}",
            "--lake", str(lake_dir),
            "--checkpoint-dir", (tmp_path / f"checkpoints-{group}").as_uri(),
            "--checkpoint-interval-s", "2",
            "--parallelism", str(parallelism),
            # The cluster has the jars in its lib/; the MiniCluster run ships them (auto).
            "--pipeline-jars", jars,
        ]  # fmt: skip

    return {"topic": events_topic, "lake": tmp_path / "lake", "job_args": job_args, "tmp": tmp_path}


def produce(spec, topic, records, **kwargs) -> None:
    produce_to_kafka(records, spec.bootstrap_servers, topic, **kwargs)


def job_state(spec, job_id: str) -> str:
    return cluster.rest(spec.address, f"/jobs/{job_id}")["state"]


def wait_for(condition, what: str, spec, job_id: str, deadline_s: float = DEADLINE_S):
    """Poll condition until it is truthy; fail at once if the job reaches a terminal state."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        state = job_state(spec, job_id)
        assert state not in TERMINAL_STATES, f"job {job_id} is {state} while waiting for {what}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


def checkpoint_completed_after(spec, job_id: str, wall_clock_s: float) -> float | None:
    """Acknowledge time (epoch s) of the newest completed checkpoint if it finished after wall_clock_s."""
    completed = cluster.rest(spec.address, f"/jobs/{job_id}/checkpoints")["latest"]["completed"]
    if completed and completed["latest_ack_timestamp"] / 1000 > wall_clock_s:
        return completed["latest_ack_timestamp"] / 1000
    return None


def wait_until_exact(spec, stream, job_id: str, workload: list[dict]) -> None:
    """Send the tail (it closes every workload window), wait for the lake to hold them, then compare."""
    produce(spec, stream["topic"], generate_records(TAIL))
    expected = expected_aggregates(workload)
    ids = {event["event_id"] for event in workload}
    wait_for(lambda: workload_complete(stream["lake"], ids, expected), "every workload window", spec, job_id)
    assert_exact(stream["lake"], workload)


def vertex_parallelism(spec, job_id: str) -> set[int]:
    return {vertex["parallelism"] for vertex in cluster.rest(spec.address, f"/jobs/{job_id}")["vertices"]}


def test_session_cluster_lake_equals_minicluster_lake(spec, stream):
    records = [*generate_records(WORKLOAD), *generate_records(TAIL)]
    workload = [json.loads(record.value) for record in generate_records(WORKLOAD)]
    produce(spec, stream["topic"], records)
    mini_lake = stream["tmp"] / "minicluster-lake"
    mini_args = [*stream["job_args"](mini_lake, parallelism=1, group="mini", jars="auto"), "--bounded"]
    with (stream["tmp"] / "minicluster.log").open("ab") as log:
        # The bounded MiniCluster run and the cluster job share the 2 cores; run them side by side.
        minicluster = subprocess.Popen(job_command(mini_args), cwd=paths.REPO_ROOT, stdout=log, stderr=log)
        job_id = cluster.submit(spec, spec.address, stream["job_args"](stream["lake"]))
        try:
            assert minicluster.wait(timeout=DEADLINE_S) == 0, "the bounded MiniCluster job failed"
            expected = expected_aggregates(workload)
            ids = {event["event_id"] for event in workload}
            wait_for(lambda: workload_complete(stream["lake"], ids, expected), "every window", spec, job_id)
        finally:
            cluster.cancel(spec.address, job_id)
            if minicluster.poll() is None:
                minicluster.kill()

    cutoff = START + WORKLOAD.duration
    on_cluster, on_minicluster = lake_aggregates(stream["lake"]), lake_aggregates(mini_lake)
    assert normalise(before(on_cluster, cutoff)) == normalise(before(on_minicluster, cutoff))
    assert normalise(before(on_cluster, cutoff)) == normalise(expected)
    workload_ids = {event["event_id"] for event in workload}
    assert Counter(i for i in lake_event_ids(stream["lake"]) if i in workload_ids) == Counter(
        i for i in lake_event_ids(mini_lake) if i in workload_ids
    )
    assert_exact(stream["lake"], workload)


def test_stop_with_savepoint_at_parallelism_1_resume_at_2_with_traffic_flowing_is_exact(spec, stream):
    records = list(generate_records(WORKLOAD))
    workload = [json.loads(record.value) for record in records]
    half = len(records) // 2
    job_id = cluster.submit(spec, spec.address, stream["job_args"](stream["lake"], parallelism=1))
    assert vertex_parallelism(spec, job_id) == {1}
    produce(spec, stream["topic"], records[:half])
    wait_for(lambda: lake_event_ids(stream["lake"]), "the first committed checkpoint", spec, job_id)
    # The second half keeps arriving while the job stops, and while its successor starts.
    producer = threading.Thread(
        target=produce, args=(spec, stream["topic"], records[half:]), kwargs={"rate": 40}
    )
    producer.start()
    try:
        stopping = time.monotonic()
        savepoint = cluster.stop_with_savepoint(spec.address, job_id, spec.savepoint_dir)
        stopped_s = time.monotonic() - stopping
        assert job_state(spec, job_id) == "FINISHED"
        assert producer.is_alive(), "traffic must still be flowing when the job is resumed"
        resumed_id = cluster.submit(
            spec, spec.address, stream["job_args"](stream["lake"], parallelism=2), from_savepoint=savepoint
        )
        submitted_s = time.monotonic() - stopping
        try:
            assert vertex_parallelism(spec, resumed_id) <= {1, 2} and 2 in vertex_parallelism(
                spec, resumed_id
            )
            restored = cluster.rest(spec.address, f"/jobs/{resumed_id}/checkpoints")["latest"]["restored"]
            assert restored and restored["is_savepoint"] and restored["external_path"] == savepoint
            wall_clock = time.time()
            wait_for(
                lambda: checkpoint_completed_after(spec, resumed_id, wall_clock),
                "a checkpoint",
                spec,
                resumed_id,
            )
            first_checkpoint_s = time.monotonic() - stopping
            producer.join()
            wait_until_exact(spec, stream, resumed_id, workload)
        finally:
            cluster.cancel(spec.address, resumed_id)
    finally:
        producer.join()
    measurements["savepoint resume (p1 -> p2)"] = (
        f"stop-with-savepoint {stopped_s:.1f} s; resumed job submitted {submitted_s:.1f} s and"
        f" first checkpoint {first_checkpoint_s:.1f} s after the stop began"
    )


def test_a_broker_sigkilled_mid_stream_and_restarted_later_the_job_carries_on_exactly(spec, stream):
    records = list(generate_records(WORKLOAD))
    workload = [json.loads(record.value) for record in records]
    half = len(records) // 2
    job_id = cluster.submit(spec, spec.address, stream["job_args"](stream["lake"]))
    try:
        produce(spec, stream["topic"], records[:half])
        wait_for(lambda: lake_event_ids(stream["lake"]), "the first committed checkpoint", spec, job_id)
        victim = spec.kafka_nodes()[1]
        pid = kafka_broker.running_pid(victim)
        assert pid is not None
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        # Two of three replicas remain in sync, so acks=all writes keep succeeding with one broker gone.
        produce(spec, stream["topic"], records[half:])
        recovered_at = wait_for(
            lambda: checkpoint_completed_after(spec, job_id, killed_at), "a checkpoint", spec, job_id
        )
        assert kafka_broker.running_pid(victim) is None
        restarting = time.monotonic()
        kafka_broker.wait_until_serving(
            victim, cluster.start_kafka_node(spec, victim), time.monotonic() + DEADLINE_S
        )
        rejoined_s = time.monotonic() - restarting
        wait_until_exact(spec, stream, job_id, workload)
        # Same job throughout: it was never resubmitted.
        assert job_state(spec, job_id) == "RUNNING"
    finally:
        cluster.cancel(spec.address, job_id)
    measurements["Kafka broker SIGKILL"] = (
        f"first checkpoint {recovered_at - killed_at:.1f} s after the kill; restarted broker served"
        f" after {rejoined_s:.1f} s"
    )


def test_a_taskmanager_sigkilled_mid_stream_the_job_restarts_from_its_checkpoint_exactly(spec, stream):
    records = list(generate_records(WORKLOAD))
    workload = [json.loads(record.value) for record in records]
    half = len(records) // 2
    job_id = cluster.submit(spec, spec.address, stream["job_args"](stream["lake"]))
    victim = None
    try:
        produce(spec, stream["topic"], records[:half])
        wait_for(lambda: lake_event_ids(stream["lake"]), "the first committed checkpoint", spec, job_id)
        producer = threading.Thread(
            target=produce, args=(spec, stream["topic"], records[half:]), kwargs={"rate": 200}
        )
        producer.start()
        source = cluster.rest(spec.address, f"/jobs/{job_id}")["vertices"][0]["id"]
        hosts = cluster.rest(spec.address, f"/jobs/{job_id}/vertices/{source}/taskmanagers")["taskmanagers"]
        victim = hosts[0]["taskmanager-id"]  # the resource id is our process name, e.g. taskmanager-1
        pid = cluster.flink_pid(spec, victim)
        assert pid is not None
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        producer.join()
        recovered_at = wait_for(
            lambda: checkpoint_completed_after(spec, job_id, killed_at), "a checkpoint", spec, job_id
        )
        failures = cluster.rest(spec.address, f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        assert failures, "the job should have failed over after losing a TaskManager"
        assert job_state(spec, job_id) == "RUNNING"
        wait_until_exact(spec, stream, job_id, workload)
    finally:
        cluster.cancel(spec.address, job_id)
        if victim is not None and cluster.flink_pid(spec, victim) is None:
            cluster.start_flink_process(spec, victim)
            cluster.wait_for_taskmanagers(spec, spec.taskmanagers, time.monotonic() + DEADLINE_S)
    memory = {process.name: process.rss_mib for process in cluster.status(spec)}
    measurements["TaskManager SIGKILL"] = f"first checkpoint {recovered_at - killed_at:.1f} s after the kill"
    measurements["cluster RSS after the tests"] = (
        f"{sum(memory.values()):.0f} MiB (" + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()) + ")"
    )
