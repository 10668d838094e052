"""Measurement 1 and 4: events/s from a pre-loaded topic to committed Parquet, and peak RSS meanwhile.

Variants, all reading the same topic from the beginning with a fresh consumer group, bounded at the
offsets that are latest when they start:
  flink_java_udf   (a) the project's job (jobs/usage_aggregates.py), checkpointing every 10 s, exactly once
  flink_python_udf (b) the same job with the parse as a per-event PyFlink Python UDF (bench/pyudf_job.py)
  python_consumer  (c) kafka-python + dicts + pyarrow, no framework (bench/plain_consumer.py)
  duckdb_batch     (d) the reference: the same events from a JSONL file, built into the same lake by one
                   DuckDB process (bench/batch_reference.py); no Kafka, no checkpoints, not streaming
  flink_*          opt-in what-ifs (WHAT_IFS): (a) with one change of settings, arguments or JVM options,
                   to measure one change at a time against (a) in the same run
  floor_*          opt-in floors: (a) cut down to its first stages (bench/floor_job.py), what no change
                   to the later stages can beat
Each run is checked: the lake must hold every event in `events` and count each one exactly once in
account_minute (or late_events).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import batch_reference, machine
from bench.workload import Workload
from pipelines.infra import kafka_broker, paths
from pipelines.lake import layout as lake
from pipelines.lake.analyst import open_lake
from pipelines.stream import flink_job

BENCH_DIR = Path(__file__).resolve().parent
VARIANTS = ("flink_java_udf", "flink_python_udf", "python_consumer", "duckdb_batch")


@dataclass(frozen=True)
class WhatIf:
    """(a) with one change: extra job arguments (`--set KEY=VALUE` for a Flink setting) and environment;
    a floor (bench/floor_job.py) runs only the job's first stages instead."""

    job_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    floor: str | None = None


def _flink_settings(*settings: str) -> tuple[str, ...]:
    return tuple(part for setting in settings for part in ("--set", setting))


# Opt-in what-ifs (--variants), not part of the default run.
WHAT_IFS = {
    "flink_no_object_reuse": WhatIf(_flink_settings("pipeline.object-reuse=false")),
    "flink_one_phase_agg": WhatIf(_flink_settings("table.optimizer.agg-phase-strategy=ONE_PHASE")),
    "flink_split_distinct": WhatIf(_flink_settings("table.optimizer.distinct-agg.split.enabled=true")),
    # Every operator its own thread: the source chain (parse, events writer, local aggregates) is the
    # busiest thread at parallelism 1.
    "flink_no_chaining": WhatIf(_flink_settings("pipeline.operator-chaining.enabled=false")),
    "flink_parallelism_2": WhatIf(("--parallelism", "2")),
    "flink_checkpoint_60s": WhatIf(("--checkpoint-interval-s", "60")),
    # The MiniCluster JVM as PyFlink starts it without flink_job.MINICLUSTER_JVM_ARGS (JVM defaults).
    "flink_unsized_heap": WhatIf(env={"JVM_ARGS": ""}),
    # The C1 compiler only: C2 took ~28 CPU-s of a 1M-event run (JFR), for faster steady-state code.
    "flink_c1_only": WhatIf(env={"JVM_ARGS": f"{flink_job.MINICLUSTER_JVM_ARGS} -XX:TieredStopAtLevel=1"}),
    # The events writer is ~29 % of the source thread (JFR): dictionary pages and Snappy are candidates.
    "flink_parquet_plain": WhatIf(("--lake-option", "parquet.enable.dictionary=false")),
    "flink_parquet_uncompressed": WhatIf(("--lake-option", "parquet.compression=UNCOMPRESSED")),
    # Floors: what the first stages alone cost (Kafka -> parse -> events Parquet; -> parse; the source).
    "floor_archive_only": WhatIf(floor="archive"),
    "floor_parse_only": WhatIf(floor="parse"),
    "floor_source_only": WhatIf(floor="source"),
}
WHAT_IF_VARIANTS = tuple(WHAT_IFS)
JOB_SCRIPTS = {"flink_python_udf": "pyudf_job.py"}
# Printed by jobs/usage_aggregates.py once the plan is built and submitted: processing starts here.
SUBMITTED_MARKER = "submitted as job"
DLQ_TOPIC = "bench-dead-letters"


def checkpoint_dir(lake_dir: Path) -> Path:
    """A run's checkpoints, beside its lake (both removed before and after the run)."""
    return lake_dir.parent / f"{lake_dir.name}-checkpoints"


def fresh_group_id(variant: str) -> str:
    """A consumer group no earlier run used, so the run reads the topic from the beginning."""
    return f"bench-{variant}-{uuid.uuid4().hex[:8]}"


def bounded_job_args(variant: str, workload: Workload, lake_dir: Path, bootstrap: str) -> list[str]:
    """Arguments of the job reading workload.topic once, from the beginning, under a fresh consumer group."""
    return [
        "--source",
        "kafka",
        "--bounded",
        "--topic",
        workload.topic,
        "--group-id",
        fresh_group_id(variant),
        "--dlq-topic",
        DLQ_TOPIC,
        "--bootstrap-servers",
        bootstrap,
        "--lake",
        str(lake_dir),
        "--checkpoint-dir",
        checkpoint_dir(lake_dir).as_uri(),
    ]


def _command(variant: str, workload: Workload, lake_dir: Path, bootstrap: str) -> list[str]:
    if variant == "duckdb_batch":
        return batch_reference.command(workload, lake_dir.parent / "cache", lake_dir)
    if variant == "python_consumer":
        return [
            sys.executable,
            "-m",
            "bench.plain_consumer",
            "--topic",
            workload.topic,
            "--group-id",
            fresh_group_id(variant),
            "--bootstrap-servers",
            bootstrap,
            "--lake",
            str(lake_dir),
        ]
    job_args = bounded_job_args(variant, workload, lake_dir, bootstrap)
    if variant == "flink_java_udf":
        return flink_job.job_command(job_args)
    if variant in WHAT_IFS:
        what_if = WHAT_IFS[variant]
        if what_if.floor:
            return [sys.executable, str(BENCH_DIR / "floor_job.py"), "--floor", what_if.floor, *job_args]
        return flink_job.job_command([*job_args, *what_if.job_args])
    return [sys.executable, str(BENCH_DIR / JOB_SCRIPTS[variant]), *job_args]


def verify_lake(lake_dir: Path, expected: int, windows: bool = True) -> dict:
    """Counts in the committed lake; `exact` when every event is archived once and, for a job that writes
    the window tables (every variant but the archive floor), aggregated once."""
    con = open_lake(lake_dir)
    try:
        archived = con.execute("select count(*) from events").fetchone()[0]
        windowed = con.execute("select coalesce(sum(requests), 0) from account_minute").fetchone()[0]
        late = con.execute("select count(*) from late_events").fetchone()[0]
    finally:
        con.close()
    # Counted on disk: the sandboxed lake connection reads only through its table views.
    files = {
        table.name: list(table.path(lake_dir).glob(f"dt=*/hr=*/{lake.COMMITTED_FILE_GLOB}"))
        for table in lake.TABLES
    }
    return {
        "archived_events": archived,
        "windowed_events": int(windowed),
        "late_events": late,
        "parquet_files": sum(len(table_files) for table_files in files.values()),
        # the lake's size model (docs/scaling.md): bytes each table takes for this many events
        "bytes_per_table": {
            name: sum(path.stat().st_size for path in table_files)
            for name, table_files in files.items()
            if table_files
        },
        "exact": archived == expected and (not windows or windowed + late == expected),
    }


def _check_lake(variant: str, lake_dir: Path, expected: int) -> dict:
    floor = WHAT_IFS[variant].floor if variant in WHAT_IFS else None
    if floor in ("parse", "source"):  # into the blackhole: no lake to check
        return {"exact": None, "floor": floor}
    return verify_lake(lake_dir, expected, windows=floor is None)


def run_variant(variant: str, workload: Workload, work_dir: Path, bootstrap: str, timeout_s: float) -> dict:
    lake_dir = work_dir / f"lake-{variant}-{workload.events}"
    for stale in (lake_dir, checkpoint_dir(lake_dir)):
        shutil.rmtree(stale, ignore_errors=True)
    kafka_broker.ensure_topics(bootstrap, {DLQ_TOPIC: 1})
    # The Python workers of (b) and the consumer of (c) import `bench` from the repository root.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **(WHAT_IFS[variant].env if variant in WHAT_IFS else {}),
    }
    broker_pid = kafka_broker.status().pid
    command = _command(variant, workload, lake_dir, bootstrap)  # (d) writes its input file here, untimed
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tail: collections.deque[str] = collections.deque(maxlen=40)
    submitted_at: list[float] = []

    def read_output() -> None:
        for line in process.stdout:
            tail.append(line.rstrip())
            if SUBMITTED_MARKER in line and not submitted_at:
                submitted_at.append(time.perf_counter())

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()

    def processes_of(kind: str):
        return lambda: [pid for pid in machine.descendants(process.pid) if machine.kind_of(pid) == kind]

    groups = {
        "broker": lambda: [broker_pid] if broker_pid else [],
        "flink_jvm": processes_of("jvm"),
        "python": processes_of("python"),
    }
    with machine.PeakRss(groups) as rss:
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # only the group this run started
            process.wait()
            code = "timeout"
    wall_s = time.perf_counter() - started
    reader.join(timeout=10)
    if code != 0:
        raise RuntimeError(f"{variant} on {workload.topic} failed ({code}):\n" + "\n".join(tail))
    # (c) and (d) have no planning phase worth separating: they start reading at once.
    processing_s = wall_s - (submitted_at[0] - started) if submitted_at else wall_s
    cpu = rss.cpu_s()
    # the variant's own processes (JVM, Python, DuckDB); the broker serves it but is not part of it
    job_cpu_s = cpu["flink_jvm"] + cpu["python"]
    result = {
        "variant": variant,
        "events": workload.events,
        "wall_s": round(wall_s, 1),
        "processing_s": round(processing_s, 1),
        "events_per_s": round(workload.events / processing_s),
        "events_per_s_incl_startup": round(workload.events / wall_s),
        "peak_rss_mib": rss.mib(),
        "cpu_s": cpu,
        # throughput per core: what a quiet core would sustain, whatever the machine's load
        "events_per_cpu_s": round(workload.events / job_cpu_s) if job_cpu_s else None,
        "lake": _check_lake(variant, lake_dir, workload.events),
    }
    shutil.rmtree(lake_dir, ignore_errors=True)
    shutil.rmtree(checkpoint_dir(lake_dir), ignore_errors=True)
    return result
