"""The container deployment for real: docker/Dockerfile's images built with podman (docker/podman/build.sh),
docker/docker-compose.yml run by podman-compose, traffic sent from the host to the published Kafka port,
then lake files on the host and an incident from the detections over them. The stack is torn down
whatever happens. Needs what scripts/bootstrap.sh installs as root (podman, runc, podman-compose, the
debootstrapped base image); image layers are cached, so only the first run on a machine builds them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.detect.detections import detect_and_route
from pipelines.infra.config import load_config
from pipelines.infra.kafka_broker import EVENTS_TOPIC
from pipelines.infra.paths import REPO_ROOT
from pipelines.lake.analyst import open_lake
from pipelines.lake.layout import COMMITTED_FILE_GLOB
from pipelines.traffic.generator import GeneratorConfig, generate_records
from pipelines.traffic.records import produce_to_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPOSE_FILE = REPO_ROOT / "docker" / "docker-compose.yml"
BUILD_SCRIPT = REPO_ROOT / "docker" / "podman" / "build.sh"
CONTAINERS_CONF = REPO_ROOT / "docker" / "podman" / "containers.conf"
BASE_IMAGE = "localhost/debian-base:bookworm"
JOB_NAME = "usagewatch-aggregates"
SERVICES = ("kafka", "jobmanager", "taskmanager", "submit")

BUILD_TIMEOUT_S = 900.0
# Deadlines, not expectations. Measured from `up` to every task running: 143 s at load average 25 on the
# 2-core machine, 433 s at load 37-46 (other work on the cores); events in the lake 54 s and 156 s later.
JOB_RUNNING_DEADLINE_S = 600.0
LAKE_DEADLINE_S = 300.0
COMMAND_TIMEOUT_S = 180.0
POLL_INTERVAL_S = 2.0
# Short checkpoints so committed lake files appear within seconds (the compose default is 60 s).
CHECKPOINT_INTERVAL_S = 5


@dataclass(frozen=True)
class Stack:
    lake: Path
    kafka_bootstrap: str
    flink_rest: str
    logs: Path


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def images() -> None:
    for tool in ("podman", "podman-compose", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing: scripts/bootstrap.sh installs it as root")
    env = podman_env()
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env, check=False).returncode != 0:
        pytest.skip(f"no {BASE_IMAGE}: scripts/bootstrap.sh builds it as root")
    began = time.monotonic()
    run(["bash", str(BUILD_SCRIPT)], env, timeout=BUILD_TIMEOUT_S)
    print(f"images built in {time.monotonic() - began:.1f} s")


def save_logs(compose: list[str], project: str, env: dict[str, str], logs: Path) -> None:
    """Every container's output, kept in the test's folder: the only trace once the stack is gone."""
    logs.mkdir(exist_ok=True)
    for service in SERVICES:
        result = subprocess.run(
            ["podman", "logs", f"{project}_{service}_1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        logs.joinpath(f"{service}.log").write_text(result.stdout + result.stderr)


@pytest.fixture
def stack(images: None, tmp_path: Path) -> Iterator[Stack]:
    project = f"uwtest{os.getpid()}"
    kafka_port, flink_port = free_port(), free_port()
    lake = tmp_path / "lake"
    env = {
        **podman_env(),
        "USAGEWATCH_DOCKER_LAKE": str(lake),
        "USAGEWATCH_DOCKER_KAFKA_PORT": str(kafka_port),
        "USAGEWATCH_DOCKER_FLINK_PORT": str(flink_port),
        "USAGEWATCH_DOCKER_CHECKPOINT_INTERVAL_S": str(CHECKPOINT_INTERVAL_S),
    }
    compose = ["podman-compose", "-p", project, "-f", str(COMPOSE_FILE)]
    stack = Stack(lake, f"localhost:{kafka_port}", f"http://127.0.0.1:{flink_port}", tmp_path / "logs")
    try:
        began = time.monotonic()
        run([*compose, "up", "-d"], env)
        print(f"stack started in {time.monotonic() - began:.1f} s")
        yield stack
    finally:
        save_logs(compose, project, env, stack.logs)
        # -v: the named volumes (Kafka data, checkpoints) go too; the lake is in tmp_path. podman-compose
        # 1.0.3 leaves the project's network behind.
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S)
        subprocess.run(["podman", "network", "rm", f"{project}_default"], env=env, capture_output=True,
                       timeout=COMMAND_TIMEOUT_S)  # fmt: skip


def running_job_id(flink_rest: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{flink_rest}/jobs/overview", timeout=5) as response:
            jobs = json.load(response)["jobs"]
    except OSError:
        return None  # the JobManager is not answering yet
    # RUNNING with every task deployed: a job is RUNNING while its tasks still wait for a TaskManager.
    for job in jobs:
        deployed = job["tasks"]["running"] == job["tasks"]["total"]
        if job["name"] == JOB_NAME and job["state"] == "RUNNING" and deployed:
            return job["jid"]
    return None


def wait_for(what: str, probe, deadline_s: float, logs_hint: str):
    deadline = time.monotonic() + deadline_s
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {deadline_s:.0f} s; {logs_hint}")
        time.sleep(POLL_INTERVAL_S)
    return value


def committed_events(lake: Path) -> int:
    if not any(lake.glob(f"events/dt=*/hr=*/{COMMITTED_FILE_GLOB}")):
        return 0
    con = open_lake(lake)
    try:
        return con.execute("select count(*) from events").fetchall()[0][0]
    finally:
        con.close()


def test_stack_turns_host_traffic_into_lake_files_and_an_incident(stack: Stack, tmp_path: Path) -> None:
    logs_hint = f"container logs in {stack.logs} after teardown"
    began = time.monotonic()
    job_id = wait_for("the aggregation job with every task running", lambda: running_job_id(stack.flink_rest),
                      JOB_RUNNING_DEADLINE_S, logs_hint)  # fmt: skip
    print(f"job {job_id} running {time.monotonic() - began:.1f} s after start-up")

    # The last 30 minutes of seeded traffic with every injected scenario (the 40-account hydra ring
    # among them), fewer benign accounts than the demo to keep the run short.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    config = GeneratorConfig(seed=13, accounts=60, start=now - timedelta(minutes=30))
    events = list(generate_records(config))
    sent = produce_to_kafka(events, stack.kafka_bootstrap, EVENTS_TOPIC)
    assert sent == len(events)

    began = time.monotonic()

    def all_committed() -> int | None:
        committed = committed_events(stack.lake)
        assert committed <= sent, f"{committed} events in the lake for {sent} sent: duplicates"
        return committed if committed == sent else None

    wait_for(f"all {sent} events in the lake", all_committed, LAKE_DEADLINE_S, logs_hint)
    print(f"{sent} events committed to the lake {time.monotonic() - began:.1f} s after sending")
    for table in ("events", "account_minute"):
        committed_files = list(stack.lake.glob(f"{table}/dt=*/hr=*/{COMMITTED_FILE_GLOB}"))
        assert committed_files, f"no committed {table} files"

    detected = detect_and_route(stack.lake, load_config(None), state=tmp_path / "state.duckdb")
    rings = [doc for doc in detected.changes if len(doc["account_ids"]) >= config.hydra_accounts]
    assert rings, f"no incident spans the {config.hydra_accounts}-account hydra ring: {detected.changes}"
