"""Throughput per core of the job on the session cluster (`usagewatch cluster up`), at each parallelism.

The job (a) of bench/throughput.py, the same bounded read of the same pre-loaded workload, submitted with
`flink run` to a standalone session cluster (a JobManager and two TaskManagers, separate JVMs) reading a
3-node Kafka cluster (3 replicas, 2 in sync). Each parallelism runs on a freshly started cluster, so every
run pays JVM start-up and JIT as the MiniCluster's (a) does, and none inherits another's warm code.

Two TaskManagers of one slot each: parallelism 2 cannot fit in one JVM, so its keyed exchanges into the
window aggregates cross the network between TaskManagers, which is what a session cluster adds to the
MiniCluster. The topic has the project's 4 partitions: 2x the highest parallelism measured, and one
topic (one load) for every run, so the runs differ only in parallelism.

CPU is read from /proc (utime + stime) of the processes the cluster recorded in its PID files, before
submission and after the job has FINISHED: the Flink JVMs (JobManager + TaskManagers), the Kafka nodes
(reported apart: they serve the job but are not part of it) and the `flink run` client, which plans the
job (in the MiniCluster that planning is inside the job's own process).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from pathlib import Path

from bench import machine
from bench.throughput import DLQ_TOPIC, WHAT_IFS, bounded_job_args, checkpoint_dir, verify_lake
from bench.workload import Workload, load_topic
from pipelines.infra import cluster, kafka_broker

# Ports away from the dev cluster (8081/6123/19092-19097), tests/test_cluster.py (18381/16323/39092-39097)
# and the dev brokers (9092, 194xx).
BENCH_PORTS = {"rest_port": 18481, "rpc_port": 16423, "kafka_port": 39192}
# One slot per TaskManager: parallelism 2 must span both JVMs (see the module docstring).
SLOTS_PER_TASKMANAGER = 1
# The whole job's window state sits in one TaskManager at parallelism 1; ~1.5 GiB of heap, like the
# MiniCluster's -Xmx2g less what its JobManager and planner take (flink_job.MINICLUSTER_JVM_ARGS).
TASKMANAGER_MEMORY = "2560m"
KAFKA_TOPIC_CONFIGS = {"min.insync.replicas": str(cluster.KAFKA_MIN_INSYNC)}
POLL_INTERVAL_S = 1.0
# After each job the cluster's processes are sampled this long with no job: three Kafka nodes
# (controller quorum, replica fetchers) and the Flink heartbeats cost CPU whatever the job does.
IDLE_SAMPLE_S = 10.0
TERMINAL_STATES = {"FINISHED", "FAILED", "CANCELED"}


def bench_spec(work_dir: Path) -> cluster.ClusterSpec:
    return cluster.ClusterSpec(
        root=work_dir / "cluster",
        slots_per_taskmanager=SLOTS_PER_TASKMANAGER,
        taskmanager_memory=TASKMANAGER_MEMORY,
        **BENCH_PORTS,
    )


def _children_cpu_s() -> float:
    """CPU of this process's waited-for descendants: the `flink run` client and the job script it ran."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cluster_pids(spec: cluster.ClusterSpec) -> dict[str, int]:
    pids = {name: cluster.flink_pid(spec, name) for name in spec.flink_processes}
    pids |= {f"kafka-{node.node_id}": kafka_broker.running_pid(node) for node in spec.kafka_nodes()}
    missing = sorted(name for name, pid in pids.items() if pid is None)
    if missing:
        raise cluster.ClusterError(f"cluster processes not running: {', '.join(missing)}")
    return pids


def _wait_until_finished(spec: cluster.ClusterSpec, job_id: str, timeout_s: float) -> dict:
    """The job's REST details once it is FINISHED; cancels it and raises if it fails or outlives timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        details = cluster.rest(spec.address, f"/jobs/{job_id}")
        if details["state"] == "FINISHED":
            return details
        if details["state"] in TERMINAL_STATES:
            exceptions = cluster.rest(spec.address, f"/jobs/{job_id}/exceptions")
            cause = (exceptions.get("root-exception") or "")[:2000]
            raise RuntimeError(f"cluster job {job_id} ended {details['state']}:\n{cause}")
        if time.monotonic() > deadline:
            cluster.cancel(spec.address, job_id)
            raise TimeoutError(f"cluster job {job_id} not finished after {timeout_s:.0f} s (cancelled)")
        time.sleep(POLL_INTERVAL_S)


def _taskmanagers_used(spec: cluster.ClusterSpec, job_id: str, details: dict) -> list[str]:
    """Resource ids of the TaskManagers that ran the job's subtasks (both, when parallelism 2 spans them)."""
    used = set()
    for vertex in details["vertices"]:
        answer = cluster.rest(spec.address, f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
        used |= {entry["taskmanager-id"] for entry in answer["taskmanagers"]}
    return sorted(used)


def run_job(
    spec: cluster.ClusterSpec,
    workload: Workload,
    parallelism: int,
    work_dir: Path,
    timeout_s: float,
    what_if: str | None = None,
) -> dict:
    """Submit the bounded job at `parallelism`, wait for it to finish, measure it and check the lake.

    what_if names one of bench/throughput.py's WHAT_IFS whose job arguments are added (the cluster's JVM
    options are its config's, so a what-if of the MiniCluster JVM's environment does not apply)."""
    variant = f"cluster_p{parallelism}" + (f"_{what_if}" if what_if else "")
    lake_dir = work_dir / f"lake-{variant}-{workload.events}"
    checkpoints = checkpoint_dir(lake_dir)
    for stale in (lake_dir, checkpoints):
        shutil.rmtree(stale, ignore_errors=True)
    kafka_broker.ensure_topics(
        spec.bootstrap_servers,
        {DLQ_TOPIC: 1},
        replication=cluster.KAFKA_REPLICATION,
        configs=KAFKA_TOPIC_CONFIGS,
    )
    job_args = [
        *bounded_job_args(variant, workload, lake_dir, spec.bootstrap_servers),
        "--parallelism",
        str(parallelism),
        "--pipeline-jars",
        "none",  # the cluster has the connector and UDF jars in its lib/
        *(WHAT_IFS[what_if].job_args if what_if else ()),
    ]
    pids = _cluster_pids(spec)
    groups = {
        "flink_jvms": lambda: [pid for name, pid in pids.items() if not name.startswith("kafka")],
        "kafka": lambda: [pid for name, pid in pids.items() if name.startswith("kafka")],
    }
    load_before = os.getloadavg()
    cpu_before = {name: machine.cpu_seconds(pid) for name, pid in pids.items()}
    began = time.monotonic()
    client_before = _children_cpu_s()
    with machine.PeakRss(groups) as rss:
        job_id = cluster.submit(spec, spec.address, job_args)
        client_cpu_s = _children_cpu_s() - client_before
        details = _wait_until_finished(spec, job_id, timeout_s)
    cpu_after = {name: machine.cpu_seconds(pid) for name, pid in pids.items()}
    window_s = time.monotonic() - began
    load_after = os.getloadavg()
    cpu = {name: round(cpu_after[name] - cpu_before[name], 1) for name in pids}
    # After the job, not before it: right after the topic is loaded the Kafka nodes are still busy with it.
    time.sleep(IDLE_SAMPLE_S)  # a measurement window, not a wait for anything
    idle_cpu = {name: machine.cpu_seconds(pid) - cpu_after[name] for name, pid in pids.items()}
    # The cluster's own clock of the job: from its creation (scheduling and deployment included) to FINISHED.
    processing_s = details["duration"] / 1000
    flink_cpu_s = sum(value for name, value in cpu.items() if not name.startswith("kafka"))
    kafka_cpu_s = sum(value for name, value in cpu.items() if name.startswith("kafka"))
    # The sinks' partition committers run at parallelism 1 whatever the job's parallelism.
    vertex_parallelism = sorted({vertex["parallelism"] for vertex in details["vertices"]})

    def idle_cpu_per_s(kafka: bool) -> float:
        return (
            sum(used for name, used in idle_cpu.items() if name.startswith("kafka") == kafka) / IDLE_SAMPLE_S
        )

    kafka_idle_cpu_s = idle_cpu_per_s(kafka=True) * window_s
    result = {
        "variant": variant,
        "parallelism": parallelism,
        "what_if": what_if,
        "vertex_parallelism": vertex_parallelism,
        "taskmanagers_used": _taskmanagers_used(spec, job_id, details),
        # each one snapshots the heap window state and rolls a Parquet file per writer subtask and partition
        "checkpoints_completed": cluster.rest(spec.address, f"/jobs/{job_id}/checkpoints")["counts"][
            "completed"
        ],
        "events": workload.events,
        "processing_s": round(processing_s, 1),
        "events_per_s": round(workload.events / processing_s),
        "cpu_s": {**cpu, "flink_run_client": round(client_cpu_s, 1)},
        "flink_jvms_cpu_s": round(flink_cpu_s, 1),
        "kafka_cpu_s": round(kafka_cpu_s, 1),
        # per core: what a quiet core gives the cluster's Flink JVMs, whatever the machine's load
        "events_per_cpu_s": round(workload.events / flink_cpu_s) if flink_cpu_s else None,
        # the MiniCluster's events/CPU-s counts its planning too: this is the figure to set beside it
        "events_per_cpu_s_incl_client": round(workload.events / (flink_cpu_s + client_cpu_s)),
        # over the window from submission to FINISHED, planning included; less what the nodes used idle
        "kafka_idle_cpu_s_per_s": round(idle_cpu_per_s(kafka=True), 2),
        "flink_jvms_idle_cpu_s_per_s": round(idle_cpu_per_s(kafka=False), 2),
        "kafka_cpu_s_above_idle": round(kafka_cpu_s - kafka_idle_cpu_s, 1),
        "kafka_cpu_s_above_idle_per_million_events": round(
            (kafka_cpu_s - kafka_idle_cpu_s) * 1_000_000 / workload.events, 1
        ),
        "window_s": round(window_s, 1),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
        "peak_rss_mib": rss.mib(),
        "lake": verify_lake(lake_dir, workload.events),
    }
    for done in (lake_dir, checkpoints):
        shutil.rmtree(done, ignore_errors=True)
    if max(vertex_parallelism) != parallelism:
        raise RuntimeError(f"{variant} ran at parallelism {vertex_parallelism}, not {parallelism}")
    return result


def run(
    work_dir: Path,
    event_sizes: tuple[int, ...],
    parallelisms: tuple[int, ...],
    seed: int,
    accounts: int,
    timeout_s: float,
    what_if: str | None = None,
) -> dict:
    """Each size's workload loaded once into the cluster's Kafka, then one run per parallelism, each on a
    freshly started cluster; the cluster is brought down at the end whatever happens."""
    if what_if and WHAT_IFS[what_if].env:
        raise ValueError(f"{what_if} changes the MiniCluster JVM's environment: it has no cluster run")
    spec = bench_spec(work_dir)
    loads, runs = [], []
    try:
        for events in event_sizes:
            workload = Workload(seed=seed, events=events, accounts=accounts)
            for nth, parallelism in enumerate(parallelisms):
                # down first: a cluster left over from an interrupted run, or the previous run's warm JVMs
                cluster.down(spec)
                started = cluster.up(spec)
                print(
                    f"  cluster: up in {started.kafka_seconds + started.flink_seconds:.0f} s; "
                    f"parallelism {parallelism} over {events:,} events ...",
                    file=sys.stderr,
                    flush=True,
                )
                if nth == 0:  # Kafka keeps the topic across restarts: one load per size
                    loaded = load_topic(
                        workload,
                        spec.bootstrap_servers,
                        work_dir / "cache",
                        replication=cluster.KAFKA_REPLICATION,
                        topic_configs=KAFKA_TOPIC_CONFIGS,
                    )
                    loads.append({"events": events, **loaded})
                run = run_job(spec, workload, parallelism, work_dir, timeout_s, what_if)
                runs.append(run)
                print(
                    f"    {run['events_per_s']:,} events/s, {run['events_per_cpu_s']:,} events per CPU-s of"
                    f" the Flink JVMs, Kafka {run['kafka_cpu_s']} CPU-s, exact: {run['lake']['exact']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        cluster.down(spec)
    return {
        "spec": {
            "taskmanagers": spec.taskmanagers,
            "slots_per_taskmanager": spec.slots_per_taskmanager,
            "taskmanager_memory": spec.taskmanager_memory,
            "kafka_nodes": cluster.KAFKA_NODES,
            "kafka_replication": cluster.KAFKA_REPLICATION,
        },
        "topic_loads": loads,
        "runs": runs,
    }
