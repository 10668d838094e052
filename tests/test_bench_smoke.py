"""The benchmark's smoke mode (`python -m bench --smoke`), so bench/ cannot rot. No timing is asserted."""

from __future__ import annotations

import importlib
import json
import random

import pytest
from kafka import KafkaAdminClient

from pipelines.detect.detections import load_detections
from pipelines.infra import cluster
from pipelines.infra.paths import REPO_ROOT


@pytest.fixture
def bench_main(monkeypatch):
    # bench/ is a top-level package of the repository, not installed; tests see only tests/ on sys.path.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("bench.__main__").main


def _run(main, tmp_path, bootstrap: str, *args: str) -> dict:
    output = tmp_path / "results.json"
    # The topic is named by seed and size: a seed of its own keeps concurrent test sessions apart.
    seed = str(random.randrange(1_000_000))
    command = [
        "--smoke",
        "--seed",
        seed,
        "--work-dir",
        str(tmp_path / "work"),
        "--output",
        str(output),
        *args,
    ]
    try:
        assert main(command) == 0
        return json.loads(output.read_text())
    finally:
        with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="usagewatch-tests") as admin:
            stale = [topic for topic in admin.list_topics() if topic.startswith(f"bench-s{seed}-")]
            if stale:
                admin.delete_topics(stale)


@pytest.mark.integration
def test_plain_consumer_and_detection_suite_smoke(bench_main, tmp_path, kafka_bootstrap):
    results = _run(
        bench_main,
        tmp_path,
        kafka_bootstrap,
        "--sections",
        "throughput,detection",
        "--variants",
        "python_consumer,duckdb_batch",
    )

    assert results["machine"]["nproc"] >= 1
    (load,) = results["throughput"]["topic_loads"]
    runs = results["throughput"]["runs"]
    assert [run["variant"] for run in runs] == ["python_consumer", "duckdb_batch"]
    for run in runs:
        assert run["events"] == load["events"] == 20_000
        # every event archived once and counted once in account_minute (or late_events)
        assert run["lake"]["exact"], run["lake"]
    (size,) = results["detection"]
    assert size["lake"]["events"] > 0
    assert size["compacted_partitions"] > 0
    # compaction changes the files, never the answer
    assert size["compacted"]["alerts"] == size["small_files"]["alerts"]
    enabled = {detection.id for detection in load_detections() if detection.enabled}
    # every detection timed, beside the suite's one shared scan of the lake
    shared_scan_step = importlib.import_module("bench.detection").SHARED_SCAN_STEP
    assert set(size["compacted"]["per_detection_s"]) == enabled | {shared_scan_step}
    # each step's own CPU seconds beside its wall seconds (the figure that survives a loaded machine)
    assert set(size["compacted"]["per_detection_cpu_s"]) == enabled | {shared_scan_step}


@pytest.mark.integration
@pytest.mark.slow
def test_flink_variants_and_event_to_alert_smoke(bench_main, tmp_path, kafka_bootstrap):
    """Several minutes on a busy 2-core machine: three Flink jobs and the continuous stack."""
    results = _run(
        bench_main,
        tmp_path,
        kafka_bootstrap,
        "--sections",
        "throughput,latency",
        "--variants",
        "flink_java_udf,flink_python_udf,floor_archive_only",
    )

    runs = {run["variant"]: run for run in results["throughput"]["runs"]}
    assert set(runs) == {"flink_java_udf", "flink_python_udf", "floor_archive_only"}
    # the floor archives every event once and writes no window table
    assert all(run["lake"]["exact"] for run in runs.values()), runs
    assert runs["floor_archive_only"]["lake"]["windowed_events"] == 0
    assert runs["flink_java_udf"]["ratio_to_a"] == 1.0
    assert runs["flink_java_udf"]["peak_rss_mib"]["flink_jvm"] > 0
    latency = results["latency"]
    assert latency["alerted"] == latency["injections"] == 3, latency


# Needs no broker, but takes ~40 s on a busy 2-core machine: it runs with the other bench smoke tests,
# out of the fast tier.
@pytest.mark.integration
@pytest.mark.slow
def test_detect_run_smoke(bench_main, tmp_path):
    output = tmp_path / "results.json"
    command = [
        "--smoke",
        "--sections",
        "detect_run",
        "--work-dir",
        str(tmp_path / "work"),
        "--output",
        str(output),
    ]
    assert bench_main(command) == 0

    run = json.loads(output.read_text())["detect_run"]
    assert run["lake"]["events"] > 0 and run["lake"]["hours"] == 6
    warm = run["warm_fresh_state"]
    assert warm["new_signals"] > 0 and warm["pages"] >= 1  # the campaigns page
    assert run["routed_lines"] == warm["incident_changes"]  # routed once each, to the JSONL sink
    assert run["warm_rerun"]["new_signals"] == run["warm_rerun"]["incident_changes"] == 0


def test_cluster_section_is_opt_in_on_its_own_ports_and_spans_both_taskmanagers(bench_main, tmp_path):
    """The cluster section's set-up, without starting it (its runs take minutes: not a smoke test)."""
    bench = importlib.import_module("bench.__main__")
    assert (
        "cluster" not in bench.SECTIONS and "cluster" in bench.OPT_IN_SECTIONS
    )  # a default run starts no cluster
    spec = importlib.import_module("bench.cluster_throughput").bench_spec(tmp_path)
    # one slot per TaskManager: parallelism 2 has to span both JVMs, so its exchanges cross between them
    assert spec.taskmanagers == 2 and spec.slots_per_taskmanager == 1
    # the TaskManagers get the memory the benchmark asks for, not the dev cluster's default
    settings = cluster.flink_config(spec)
    assert settings["taskmanager.memory.process.size"] == spec.taskmanager_memory
    assert spec.taskmanager_memory != cluster.ClusterSpec().taskmanager_memory

    def ports(of: cluster.ClusterSpec) -> set[int]:
        kafka = {port for node in of.kafka_nodes() for port in (node.port, node.controller_port)}
        return {of.rest_port, of.rpc_port, *kafka}

    # a developer's `usagewatch cluster up` (the defaults) and the benchmark's cluster can run side by side
    assert not ports(spec) & ports(cluster.ClusterSpec())
    assert spec.root == tmp_path / "cluster"


def test_floors_run_the_jobs_own_first_stages_and_nothing_after_them(bench_main, tmp_path):
    """A floor is only evidence if it is the shipped job cut short, not a job of its own."""
    floor_job = importlib.import_module("bench.floor_job")
    flink_job = importlib.import_module("pipelines.stream.flink_job")
    config = flink_job.JobConfig(lake_dir=str(tmp_path))
    job_ddl, job_inserts = flink_job.statements(config)

    ddl, (archive_insert,) = floor_job.floor_statements("archive", config)
    assert ddl == job_ddl and archive_insert in job_inserts
    assert archive_insert.startswith("insert into lake_events\n")

    ddl, (parse_insert,) = floor_job.floor_statements("parse", config)
    assert ddl[:-1] == job_ddl and "'connector' = 'blackhole'" in ddl[-1]
    # the archive's own select, only its sink swapped
    assert parse_insert.split("\n", 1)[1] == archive_insert.split("\n", 1)[1]
    assert parse_insert.startswith("insert into parse_floor\n")

    ddl, (source_insert,) = floor_job.floor_statements("source", config)
    assert ddl[:-1] == job_ddl and "parse" not in source_insert
    assert "from access_events_source" in source_insert

    with pytest.raises(SystemExit, match="--floor must be one of"):
        floor_job._pop_floor(["--floor", "windows", "--lake", "x"])
    argv = ["--bounded", "--floor", "parse", "--lake", "x"]
    assert floor_job._pop_floor(argv) == "parse" and argv == ["--bounded", "--lake", "x"]
