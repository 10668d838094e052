"""`usagewatch demo`: the whole chain once, on this machine, with progress.

Local broker -> demo topics -> streaming aggregation job (MiniCluster) -> generated traffic with the
injected scenarios -> wait until every valid event is committed to the lake -> detections -> signals ->
incidents -> one line per page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import UnknownTopicOrPartitionError

from pipelines.commands.detect import detect
from pipelines.commands.quality import validate
from pipelines.commands.reports import report
from pipelines.incidents.alert_state import AlertStore
from pipelines.incidents.engine import page_line
from pipelines.infra import kafka_broker, paths
from pipelines.infra.config import load_config
from pipelines.lake.analyst import open_lake
from pipelines.stream import flink_job
from pipelines.traffic.generator import GeneratorConfig, generate_records
from pipelines.traffic.records import produce_to_kafka

DEMO_DIR = paths.RUN_DIR / "demo"
# The demo owns these topics and recreates them on every run, so earlier runs never leak in.
DEMO_EVENTS_TOPIC = f"demo.{kafka_broker.EVENTS_TOPIC}"
DEMO_DLQ_TOPIC = f"demo.{kafka_broker.DLQ_TOPIC}"
LAKE_DEADLINE_S = 180.0
POLL_INTERVAL_S = 1.0


class _Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)


def _recreate_topics(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="usagewatch-demo")
    try:
        for topic in (DEMO_EVENTS_TOPIC, DEMO_DLQ_TOPIC):
            try:
                admin.delete_topics([topic])
            except UnknownTopicOrPartitionError:
                continue
        # Deletion is asynchronous: wait until the broker no longer lists them before creating anew.
        deadline = time.monotonic() + 30
        while {DEMO_EVENTS_TOPIC, DEMO_DLQ_TOPIC} & set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError("demo topics were not deleted within 30 s")
            time.sleep(0.2)
    finally:
        admin.close()
    partitions = kafka_broker.PROJECT_TOPICS
    kafka_broker.ensure_topics(
        bootstrap,
        {
            DEMO_EVENTS_TOPIC: partitions[kafka_broker.EVENTS_TOPIC],
            DEMO_DLQ_TOPIC: partitions[kafka_broker.DLQ_TOPIC],
        },
    )


def _committed_events(lake_dir: Path) -> int:
    con = open_lake(lake_dir)
    try:
        return con.execute("select count(*) from events").fetchall()[0][0]
    finally:
        con.close()


def _wait_for_lake(lake_dir: Path, expected: int, progress: _Progress) -> int:
    deadline = time.monotonic() + LAKE_DEADLINE_S
    committed, last_reported = 0, -1
    while time.monotonic() < deadline:
        committed = _committed_events(lake_dir)
        if committed != last_reported:
            progress.step(f"lake: {committed}/{expected} events committed")
            last_reported = committed
        if committed >= expected:
            return committed
        if flink_job.running_job_pid() is None:
            raise RuntimeError(f"the aggregation job exited; see {flink_job.JOB_LOG}")
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"only {committed}/{expected} events reached the lake in {LAKE_DEADLINE_S:.0f} s")


def _dead_letters(bootstrap: str, expected: int) -> list[dict]:
    consumer = KafkaConsumer(
        DEMO_DLQ_TOPIC,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    try:
        letters = []
        for message in consumer:
            letters.append(json.loads(message.value))
            if len(letters) >= expected:
                break
        return letters
    finally:
        consumer.close()


def run_demo(args: argparse.Namespace) -> int:
    progress = _Progress()
    broker = kafka_broker.start()
    bootstrap = broker.bootstrap
    state = "already running" if broker.already_running else f"started in {broker.seconds:.1f} s"
    progress.step(f"kafka: broker {state} at {bootstrap}")
    _recreate_topics(bootstrap)
    progress.step(f"kafka: topics {DEMO_EVENTS_TOPIC}, {DEMO_DLQ_TOPIC} ready")

    lake_dir = DEMO_DIR / "lake"
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    lake_dir.mkdir(parents=True)
    if flink_job.running_job_pid():
        flink_job.stop_detached()
    job_args = [
        "--source",
        "kafka",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        DEMO_EVENTS_TOPIC,
        "--dlq-topic",
        DEMO_DLQ_TOPIC,
        "--group-id",
        f"usagewatch-demo-{uuid.uuid4().hex[:8]}",
        "--lake",
        str(lake_dir),
        "--checkpoint-dir",
        (DEMO_DIR / "checkpoints").as_uri(),
        "--checkpoint-interval-s",
        "5",
    ]
    pid = flink_job.start_detached(job_args)
    progress.step(f"flink: aggregation job starting on the MiniCluster (pid {pid}, log {flink_job.JOB_LOG})")

    try:
        # Traffic that just happened: its event times end at this minute, as live traffic's would.
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        config = GeneratorConfig(
            seed=args.seed,
            accounts=args.accounts,
            start=now - timedelta(minutes=args.minutes),
            duration=timedelta(minutes=args.minutes),
            malformed=args.malformed,
        )
        records = list(generate_records(config))
        kinds = Counter("malformed" if record.malformed else "valid" for record in records)
        sent = produce_to_kafka(records, bootstrap, DEMO_EVENTS_TOPIC)
        progress.step(
            f"traffic: {sent} messages produced ({kinds['valid']} events over {args.minutes} min of event"
            f" time with the injected scenarios, {kinds['malformed']} malformed)"
        )
        _wait_for_lake(lake_dir, kinds["valid"], progress)
        letters = _dead_letters(bootstrap, kinds["malformed"])
        reasons = Counter(letter["reason"].split(":")[0] for letter in letters)
        progress.step(f"dead letters: {len(letters)} on {DEMO_DLQ_TOPIC} ({dict(reasons)})")
    finally:
        flink_job.stop_detached()
        progress.step("flink: aggregation job stopped")

    incidents_path, signals_path = DEMO_DIR / "incidents.jsonl", DEMO_DIR / "signals.jsonl"
    # The rest is what an operator would run, command by command, against the demo's own state.
    state = DEMO_DIR / "state.duckdb"
    progress.step(f"usagewatch validate --lake {lake_dir} --state {state}")
    # A failed expectation (exit code 1) goes on: the detections then say "degraded". Errors raise, as in
    # the commands themselves.
    validate(lake=lake_dir, state=state)
    progress.step(
        f"usagewatch detect --lake {lake_dir} --state {state} --output {incidents_path} "
        f"--signals {signals_path}"
    )
    detect(lake_dir, load_config(), state, incidents_path, signals_path)
    report_dir = DEMO_DIR / "report"
    progress.step(
        f"usagewatch report --period daily --date today --lake {lake_dir} --state {state} --out {report_dir}"
    )
    report("daily", datetime.now(UTC).date(), lake=lake_dir, state=state, out=report_dir)
    _print_pages(state)
    reports = sorted(report_dir.glob("*.html"))
    print(f"\nincidents: {incidents_path}\nsignals:   {signals_path}\nlake:      {lake_dir}")
    if reports:
        print(f"report:    {reports[-1]}")
    print(f'query:     usagewatch sql --lake {lake_dir} --state {state} "select * from incidents"')
    progress.step("demo complete")
    return 0


def _print_pages(state: Path) -> None:
    """What on-call got from the whole demo: one line per incident, as it was paged."""
    with AlertStore.open(state) as store:
        opened = [record["incident"] for record in store.list_incidents() if not record["merged_into"]]
    print(f"\npages: {len(opened)}")
    for incident in sorted(opened, key=lambda i: (i["created_at"], i["incident_id"])):
        print(page_line({**incident, "change": "opened"}))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline locally end to end")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--accounts", type=int, default=200, help="benign accounts")
    parser.add_argument("--minutes", type=int, default=30, help="event-time span of the traffic")
    parser.add_argument("--malformed", type=int, default=12, help="malformed records to mix in")
    parser.set_defaults(func=run_demo)
