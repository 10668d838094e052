"""Measurement 3: event-to-alert latency in continuous mode.

The real stack runs: the aggregation job on a fresh topic (checkpoints every 10 s, the default), steady
background traffic produced in real time, and `usagewatch detect --every 5s` over the job's lake. Every
`interval_s` an access from an export-restricted country (IR) is injected for a new account; its latency
is from the broker acknowledging that event to the bench seeing its restricted_region_access signal in
detect's --signals JSONL (polled every 0.2 s): the moment the finding is recorded and audited; whether it
pages is the incident engine's decision, the same run. Injections overlap, so 20 of them take about a minute.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer

from pipelines.infra import kafka_broker, paths
from pipelines.stream import flink_job
from pipelines.stream.contracts import format_event_time
from pipelines.traffic.generator import GeneratorConfig, generate_events, generate_records
from pipelines.traffic.records import Record, produce_to_kafka

DETECTION = "restricted_region_access"
POLL_S = 0.2
JOB_START_TIMEOUT_S = 240
ALERT_TIMEOUT_S = 150


def _config_text(work_dir: Path) -> str:
    # Everything the detect loop writes stays in the bench's work directory.
    return (
        f"lake:\n  path: {work_dir / 'lake'}\n"
        f"state:\n  path: {work_dir / 'state' / 'state.duckdb'}\n"
        f"  audit_log: {work_dir / 'state' / 'audit.jsonl'}\n"
        "routing:\n  sinks:\n    - name: notifications\n      type: jsonl\n"
        f"      path: {work_dir / 'state' / 'notifications.jsonl'}\n      min_severity: info\n"
        f"quality:\n  results_dir: {work_dir / 'quality'}\n  reports_dir: {work_dir / 'reports'}\n"
    )


def _restricted_access(template: dict, index: int) -> dict:
    return dict(
        template,
        event_id=str(uuid.uuid4()),
        event_time=format_event_time(datetime.now(UTC)),
        account_id=f"acct_bench{index:04d}{uuid.uuid4().hex[:8]}",
        api_key_id=f"key_bench{index:04d}",
        source_ip=f"5.160.{index % 250}.{10 + index % 200}",
        country="IR",
        latitude=35.6892,
        longitude=51.389,
        asn_type="residential",
    )


def _background_traffic(bootstrap: str, topic: str, stop: threading.Event) -> None:
    """Benign traffic whose event time follows the wall clock, so watermarks and files keep moving."""
    config = GeneratorConfig(
        seed=11, accounts=60, start=datetime.now(UTC), duration=timedelta(hours=1), scenarios=()
    )

    def until_stopped() -> Iterator[Record]:
        for record in generate_records(config):
            if stop.is_set():
                return
            yield record

    produce_to_kafka(until_stopped(), bootstrap, topic, time_compression=1)


def _wait_for(condition, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(work_dir: Path, bootstrap: str, injections: int, interval_s: float) -> dict:
    shutil.rmtree(work_dir, ignore_errors=True)  # a previous run's lake and alert state would skew this one
    work_dir.mkdir(parents=True)
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    kafka_broker.ensure_topics(bootstrap, {topic: kafka_broker.PROJECT_TOPICS[kafka_broker.EVENTS_TOPIC]})
    kafka_broker.ensure_topics(bootstrap, {"bench-dead-letters": 1})
    lake_dir, output = work_dir / "lake", work_dir / "signals.jsonl"
    config_file = work_dir / "usagewatch.yml"
    config_file.write_text(_config_text(work_dir))
    job_args = [
        "--source",
        "kafka",
        "--topic",
        topic,
        "--group-id",
        topic,
        "--dlq-topic",
        "bench-dead-letters",
        "--bootstrap-servers",
        bootstrap,
        "--lake",
        str(lake_dir),
        "--checkpoint-dir",
        (work_dir / "checkpoints").as_uri(),
    ]
    detect_command = [
        str(Path(sys.executable).parent / "usagewatch"),
        "detect",
        "--lake",
        str(lake_dir),
        "--every",
        "5s",
        "--signals",
        str(output),
        "--config",
        str(config_file),
    ]
    stop = threading.Event()
    traffic = threading.Thread(target=_background_traffic, args=(bootstrap, topic, stop), daemon=True)
    processes: list[subprocess.Popen] = []
    try:
        with (work_dir / "job.log").open("ab") as log:
            processes.append(
                subprocess.Popen(
                    flink_job.job_command(job_args),
                    cwd=paths.REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        traffic.start()
        _wait_for(
            lambda: any(lake_dir.glob("events/dt=*/hr=*/part-*")),
            "the job's first committed file",
            JOB_START_TIMEOUT_S,
        )
        lake_dir.mkdir(exist_ok=True)
        with (work_dir / "detect.log").open("ab") as log:
            processes.append(
                subprocess.Popen(
                    detect_command,
                    cwd=paths.REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        template = next(generate_events(GeneratorConfig(seed=12, scenarios=())))
        injected: dict[str, float] = {}
        alerted: dict[str, float] = {}
        read_bytes = 0

        def collect_alerts() -> None:
            nonlocal read_bytes
            if not output.exists():
                return
            with output.open("rb") as handle:
                handle.seek(read_bytes)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            read_bytes += len(complete)
            seen_at = time.time()
            for line in complete.splitlines():
                alert = json.loads(line)
                if alert["detection_id"] == DETECTION and alert["entity_id"] in injected:
                    alerted.setdefault(alert["entity_id"], seen_at)

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        try:
            next_at = time.monotonic()
            for index in range(injections):
                event = _restricted_access(template, index)
                producer.send(topic, key=event["account_id"].encode(), value=json.dumps(event).encode()).get(
                    timeout=30
                )
                injected[event["account_id"]] = time.time()
                next_at += interval_s
                while time.monotonic() < next_at:
                    collect_alerts()
                    time.sleep(POLL_S)
        finally:
            producer.close()

        def all_alerted() -> bool:
            collect_alerts()
            return len(alerted) == len(injected)

        with contextlib.suppress(TimeoutError):  # injections without an alert are reported as missing
            _wait_for(all_alerted, f"{DETECTION} alerts for all {injections} injections", ALERT_TIMEOUT_S)
    finally:
        stop.set()
        for process in reversed(processes):
            _stop(process)
        traffic.join(timeout=30)
        with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="usagewatch-bench") as admin:
            admin.delete_topics([topic])
    latencies = [alerted[account] - injected[account] for account in alerted]
    result = {"injections": injections, "alerted": len(alerted), "missing": injections - len(alerted)}
    if latencies:
        result.update(
            p50_s=round(_percentile(latencies, 0.5), 1),
            p99_s=round(_percentile(latencies, 0.99), 1),
            max_s=round(max(latencies), 1),
            min_s=round(min(latencies), 1),
        )
    return result


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group this module started (detect finishes its cycle), SIGKILL if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
