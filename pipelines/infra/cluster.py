"""A real cluster on one machine: a Flink standalone session cluster and a 3-broker KRaft Kafka on 127.0.0.1.

`usagewatch cluster up|down|status` runs one JobManager and two TaskManagers as separate JVMs, from the
Flink distribution inside the pinned apache-flink wheel, with the connector and UDF jars on their
classpath (a private lib/ of links, so the job runs with `--pipeline-jars none` as in Docker), and three
Kafka nodes (broker + controller each; replication factor 3, min.insync.replicas 2). The Kafka nodes are
pipelines.infra.kafka_broker.BrokerNodes: the same code as the single dev broker, with other ports.

`usagewatch cluster submit|stop-job|resume|jobs` submits the aggregation job with `flink run --python`,
stops it with a savepoint and resumes it from one, optionally at a new parallelism; on this cluster
or, with --address, on any Flink cluster whose REST API is reachable.

Everything lives under RUN_DIR/cluster (config, lib, logs, PIDs, checkpoints, savepoints, Kafka data);
only processes recorded in its PID files, and only if their command line is ours, are ever signalled.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import yaml

from pipelines.infra import kafka_broker, paths, processes
from pipelines.infra.kafka_broker import HOST, PROJECT_TOPICS, BrokerNode
from pipelines.stream import flink_job

CLUSTER_RUN_DIR = paths.RUN_DIR / "cluster"
# The Flink distribution shipped inside the apache-flink wheel (bin/, lib/, opt/, conf/).
FLINK_DIST = Path(importlib.util.find_spec("pyflink").origin).parent
JOBMANAGER_CLASS = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER_CLASS = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
JOB_NAME = "usagewatch-aggregates"

KAFKA_NODES = 3
KAFKA_REPLICATION = 3
# With 3 replicas, 2 must acknowledge each acks=all write: one broker may be lost without losing data
# or availability.
KAFKA_MIN_INSYNC = 2

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
SAVEPOINT_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.5


# Settings every deployment shares - this cluster, docker/docker-compose.yml, docker/k8s (checked by
# tests/test_k8s_manifest.py) - because the failure and rescaling tests prove them.


class ClusterError(RuntimeError):
    """The cluster or a job on it could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where a local cluster keeps its state and which loopback ports it uses."""

    root: Path = CLUSTER_RUN_DIR
    rest_port: int = 8081
    rpc_port: int = 6123
    # Kafka brokers listen on kafka_port, +1, +2; their controllers on the three ports after those.
    # Distinct from the dev broker (9092/9093), so both can run.
    kafka_port: int = 19092
    taskmanagers: int = 2
    slots_per_taskmanager: int = 2
    taskmanager_memory: str = "1536m"  # process size; a benchmark's one-slot TaskManagers take more

    @property
    def address(self) -> str:
        return f"{HOST}:{self.rest_port}"

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.root / "pids"

    @property
    def checkpoint_dir(self) -> str:
        return (self.root / "checkpoints").resolve().as_uri()

    @property
    def savepoint_dir(self) -> str:
        return (self.root / "savepoints").resolve().as_uri()

    @property
    def flink_processes(self) -> list[str]:
        return ["jobmanager", *(f"taskmanager-{n}" for n in range(1, self.taskmanagers + 1))]

    def kafka_nodes(self) -> list[BrokerNode]:
        controllers = [self.kafka_port + KAFKA_NODES + i for i in range(KAFKA_NODES)]
        # A static quorum: all three nodes vote from the start, formatted with the same cluster id.
        voters = ",".join(f"{i + 1}@{HOST}:{port}" for i, port in enumerate(controllers))
        return [
            BrokerNode(
                node_id=i + 1,
                port=self.kafka_port + i,
                controller_port=controllers[i],
                run_dir=self.root / "kafka" / f"node-{i + 1}",
                quorum={"controller.quorum.voters": voters},
                replication=KAFKA_REPLICATION,
                min_insync_replicas=KAFKA_MIN_INSYNC,
            )
            for i in range(KAFKA_NODES)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap for node in self.kafka_nodes())


SPEC_FILE_NAME = "cluster.json"


def saved_spec(root: Path = CLUSTER_RUN_DIR) -> ClusterSpec:
    """The spec `cluster up` recorded under root, or the defaults if it never ran there."""
    try:
        recorded = json.loads((root / SPEC_FILE_NAME).read_text())
    except FileNotFoundError:
        return ClusterSpec(root=root)
    return ClusterSpec(**{**recorded, "root": root})


# --- Flink configuration --------------------------------------------------------------------------------


def flink_config(spec: ClusterSpec) -> dict[str, object]:
    """config.yaml of the session cluster (flat keys), also used by the `flink` client."""
    shipped = yaml.safe_load((FLINK_DIST / "conf" / "config.yaml").read_text())
    return {
        # The JVM flags the distribution needs on Java 17 (add-opens), as shipped.
        "env.java.opts.all": shipped["env"]["java"]["opts"]["all"],
        "jobmanager.rpc.address": HOST,
        "jobmanager.rpc.port": spec.rpc_port,
        "jobmanager.bind-host": HOST,
        "taskmanager.bind-host": HOST,
        "taskmanager.host": HOST,
        "rest.address": HOST,
        "rest.bind-address": HOST,
        "rest.port": spec.rest_port,
        # Sized for a 2-core / 24 GiB machine that also runs Kafka and the producers.
        "jobmanager.memory.process.size": "1g",
        "taskmanager.memory.process.size": spec.taskmanager_memory,
        # No RocksDB and no Python UDFs: managed memory would sit unused, give it to the heap.
        "taskmanager.memory.managed.fraction": 0.1,
        "taskmanager.numberOfTaskSlots": spec.slots_per_taskmanager,
        "parallelism.default": 1,
        # The client runs the job script, and any Python worker would run, with this venv's interpreter.
        "python.client.executable": sys.executable,
        "python.executable": sys.executable,
        "execution.checkpointing.dir": spec.checkpoint_dir,
        "execution.checkpointing.savepoint-dir": spec.savepoint_dir,
        **flink_job.PORTABLE_SETTINGS,
        "jobmanager.execution.failover-strategy": "region",
        # Loopback has no network partitions: a silent TaskManager is dead. Notice it in seconds
        # (default 50 s) so the job fails over to the surviving TaskManager quickly.
        "heartbeat.interval": 2000,
        "heartbeat.timeout": 10000,
    }


def _prepare_flink_files(spec: ClusterSpec) -> None:
    """conf/ (config.yaml + the shipped log4j files) and lib/ (the distribution's jars + ours)."""
    for directory in (spec.conf_dir, spec.log_dir, spec.pid_dir):
        directory.mkdir(parents=True, exist_ok=True)
    header = "# Written by `usagewatch cluster up`; regenerated on every start.\n"
    spec.conf_dir.joinpath("config.yaml").write_text(
        header + yaml.safe_dump(flink_config(spec), sort_keys=False, width=100_000)
    )
    for log_config in ("log4j-console.properties", "log4j-cli.properties", "log4j.properties"):
        spec.conf_dir.joinpath(log_config).write_text((FLINK_DIST / "conf" / log_config).read_text())
    try:
        ours = paths.flink_job_jars()
    except FileNotFoundError as error:
        raise ClusterError(str(error)) from None
    # Links, rebuilt each time: the cluster classpath is the wheel's lib/ plus the connector and UDF jars.
    if spec.lib_dir.exists():
        for link in spec.lib_dir.iterdir():
            link.unlink()
    spec.lib_dir.mkdir(parents=True, exist_ok=True)
    for jar in [*sorted((FLINK_DIST / "lib").glob("*.jar")), *ours]:
        spec.lib_dir.joinpath(jar.name).symlink_to(jar.resolve())


def flink_env(spec: ClusterSpec) -> dict[str, str]:
    """Environment for Flink's scripts: our config, lib, logs and PID files instead of the wheel's."""
    return {
        "FLINK_CONF_DIR": str(spec.conf_dir),
        "FLINK_LIB_DIR": str(spec.lib_dir),
        "FLINK_LOG_DIR": str(spec.log_dir),
        "FLINK_PID_DIR": str(spec.pid_dir / "flink"),
    }


# --- processes ------------------------------------------------------------------------------------------


def _pid_file(spec: ClusterSpec, name: str) -> Path:
    return spec.pid_dir / f"{name}.pid"


def _marks(spec: ClusterSpec, name: str) -> tuple[str, str]:
    """What the command line of our Flink process `name` holds: its main class and our config dir (on it
    for the log4j settings), so a recycled PID will not match."""
    return (JOBMANAGER_CLASS if name == "jobmanager" else TASKMANAGER_CLASS), str(spec.conf_dir)


def flink_pid(spec: ClusterSpec, name: str) -> int | None:
    """PID of our Flink process `name` (jobmanager, taskmanager-N) if it runs, else None."""
    return processes.running_pid(_pid_file(spec, name), *_marks(spec, name))


def start_flink_process(spec: ClusterSpec, name: str) -> subprocess.Popen:
    """Start the JobManager or one TaskManager in the foreground of its own process (the JVM itself)."""
    if name == "jobmanager":
        command = [str(FLINK_DIST / "bin" / "jobmanager.sh"), "start-foreground"]
    else:
        # A stable resource id names the TaskManager in the REST API, so tests can find its process.
        command = [
            str(FLINK_DIST / "bin" / "taskmanager.sh"),
            "start-foreground",
            "-D",
            f"taskmanager.resource-id={name}",
        ]
    process = processes.spawn(command, spec.log_dir / f"{name}.log", env=flink_env(spec))
    _pid_file(spec, name).write_text(f"{process.pid}\n")
    return process


def _stop_flink_process(spec: ClusterSpec, name: str) -> int | None:
    return processes.stop_recorded(_pid_file(spec, name), *_marks(spec, name), timeout=STOP_TIMEOUT_S)


# --- REST API -------------------------------------------------------------------------------------------


def rest(
    address: str, path: str, body: dict | None = None, timeout: float = 10.0, method: str | None = None
) -> dict:
    """One call to Flink's REST API (POST when body is given); the parsed JSON answer."""
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise ClusterError(
            f"Flink REST {path} at {address}: HTTP {error.code} {error.read()[:500]!r}"
        ) from None
    except OSError as error:
        raise ClusterError(f"Flink REST API at {address} unreachable: {error}") from None


def _overview_or_none(address: str) -> dict | None:
    try:
        return rest(address, "/overview", timeout=2.0)
    except ClusterError:
        return None


def jobs(address: str) -> list[dict]:
    """Jobs the cluster knows: dicts with jid, name, state, start-time..."""
    return rest(address, "/jobs/overview")["jobs"]


def running_job_id(address: str, name: str = JOB_NAME) -> str:
    running = [job["jid"] for job in jobs(address) if job["name"] == name and job["state"] == "RUNNING"]
    if len(running) != 1:
        raise ClusterError(f"expected one running {name} job at {address}, found {len(running)}")
    return running[0]


# --- the cluster ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpResult:
    kafka_seconds: float
    flink_seconds: float
    started: list[str]


def up(spec: ClusterSpec = ClusterSpec(), timeout: float = START_TIMEOUT_S) -> UpResult:  # noqa: B008
    """Start whatever part of the cluster is not running; return once Kafka and Flink serve."""
    with processes.exclusive(spec.root / ".lock"):
        spec.root.joinpath(SPEC_FILE_NAME).write_text(
            json.dumps({k: v for k, v in asdict(spec).items() if k != "root"}, indent=2) + "\n"
        )
        began = time.monotonic()
        started = _kafka_up(spec, began + timeout)
        kafka_seconds = time.monotonic() - began
        began = time.monotonic()
        started += _flink_up(spec, began + timeout)
        return UpResult(kafka_seconds, time.monotonic() - began, started)


def _kafka_cluster_id(spec: ClusterSpec) -> str:
    # One id for the three nodes, kept so a node whose data was wiped can be formatted to rejoin.
    id_file = spec.root / "kafka" / "cluster-id"
    if not id_file.exists():
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(kafka_broker._new_cluster_id() + "\n")
    return id_file.read_text().strip()


def start_kafka_node(spec: ClusterSpec, node: BrokerNode) -> subprocess.Popen:
    hint = "choose other ports with `usagewatch cluster up --kafka-port`"
    return kafka_broker.launch(node, _kafka_cluster_id(spec), hint)


def _kafka_up(spec: ClusterSpec, deadline: float) -> list[str]:
    nodes = spec.kafka_nodes()
    # All nodes are launched before waiting: none serves until a majority of controllers is up.
    launched = {
        node.node_id: start_kafka_node(spec, node) for node in nodes if kafka_broker.running_pid(node) is None
    }
    for node in nodes:
        if node.node_id in launched:
            kafka_broker.wait_until_serving(node, launched[node.node_id], deadline)
    kafka_broker.ensure_topics(
        spec.bootstrap_servers,
        PROJECT_TOPICS,
        replication=KAFKA_REPLICATION,
        configs={"min.insync.replicas": str(KAFKA_MIN_INSYNC)},
    )
    return [f"kafka-{node_id}" for node_id in launched]


def _flink_up(spec: ClusterSpec, deadline: float) -> list[str]:
    _prepare_flink_files(spec)
    launched = {}
    for name in spec.flink_processes:
        if flink_pid(spec, name) is None:
            launched[name] = start_flink_process(spec, name)
    wait_for_taskmanagers(spec, spec.taskmanagers, deadline, launched)
    return list(launched)


def wait_for_taskmanagers(
    spec: ClusterSpec, count: int, deadline: float, launched: dict[str, subprocess.Popen] | None = None
) -> None:
    """Return once the JobManager answers and `count` TaskManagers have registered with it."""
    while True:
        overview = _overview_or_none(spec.address)
        if overview is not None and overview["taskmanagers"] >= count:
            return
        for name, process in (launched or {}).items():
            if process.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {process.returncode}; see {spec.log_dir / (name + '.log')}"
                )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"Flink at {spec.address} did not report {count} TaskManagers in time; logs in {spec.log_dir}"
            )
        time.sleep(POLL_INTERVAL_S)


def down(spec: ClusterSpec = ClusterSpec()) -> list[str]:  # noqa: B008
    """Stop every process of the cluster that is ours: TaskManagers, JobManager, then Kafka."""
    stopped = []
    with processes.exclusive(spec.root / ".lock"), ThreadPoolExecutor() as pool:
        # In parallel: a Kafka node shutting down alone waits for a quorum the others already left.
        taskmanagers = [name for name in spec.flink_processes if name != "jobmanager"]
        stages = [
            {name: partial(_stop_flink_process, spec, name) for name in taskmanagers},
            {"jobmanager": partial(_stop_flink_process, spec, "jobmanager")},
            {
                f"kafka-{node.node_id}": partial(kafka_broker.stop_node, node, STOP_TIMEOUT_S)
                for node in spec.kafka_nodes()
            },
        ]
        for stage in stages:
            futures = {name: pool.submit(stop) for name, stop in stage.items()}
            stopped += [name for name, future in futures.items() if future.result() is not None]
    return stopped


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    rss_mib: float


def status(spec: ClusterSpec = ClusterSpec()) -> list[ProcessStatus]:  # noqa: B008
    pids = {name: flink_pid(spec, name) for name in spec.flink_processes}
    pids |= {f"kafka-{node.node_id}": kafka_broker.running_pid(node) for node in spec.kafka_nodes()}
    return [ProcessStatus(name, pid, processes.rss_mib(pid)) for name, pid in pids.items()]


# --- jobs -----------------------------------------------------------------------------------------------


def flink_run_command(
    address: str, job_args: list[str], from_savepoint: str | None = None, detached: bool = True
) -> list[str]:
    """`flink run --python` for the aggregation job; job_args go to the script after `--`."""
    command = [str(FLINK_DIST / "bin" / "flink"), "run", "--jobmanager", address]
    if detached:
        command.append("--detached")
    if from_savepoint:
        command += ["--fromSavepoint", from_savepoint]
    command += ["--python", str(flink_job.JOB_SCRIPT), "--pyFiles", str(paths.REPO_ROOT / "pipelines")]
    return [*command, "--", *job_args]


def submit(
    spec: ClusterSpec,
    address: str,
    job_args: list[str],
    from_savepoint: str | None = None,
    timeout: float = START_TIMEOUT_S,
) -> str:
    """Submit the job (detached); returns its job id once the cluster has accepted it."""
    _prepare_flink_files(spec)  # the client reads the same config.yaml (Python interpreter, logs)
    log = spec.log_dir / "submit.log"
    offset = log.stat().st_size if log.exists() else 0
    client = processes.spawn(flink_run_command(address, job_args, from_savepoint), log, env=flink_env(spec))
    deadline = time.monotonic() + timeout
    while True:
        output = log.read_bytes()[offset:].decode(errors="replace")
        submitted = re.search(r"JobID ([0-9a-f]{32})", output)
        if submitted:
            break
        if client.poll() is not None or time.monotonic() > deadline:
            processes.stop_process(client.pid, STOP_TIMEOUT_S, log.with_suffix(".pid"))
            tail = "\n".join(output.splitlines()[-30:])
            raise ClusterError(f"flink run did not submit the job (exit {client.returncode}):\n{tail}")
        time.sleep(POLL_INTERVAL_S)
    # Detached, the job script returns once the cluster has the job (jobs/usage_aggregates.py); the
    # client is stopped only if it outlives the deadline.
    try:
        client.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(client.pid, signal.SIGTERM)
        client.wait(timeout=STOP_TIMEOUT_S)
    return submitted.group(1)


def stop_with_savepoint(
    address: str, job_id: str, target_dir: str, timeout: float = SAVEPOINT_TIMEOUT_S
) -> str:
    """Stop the job with a savepoint (no drain: open windows stay in the savepoint); its location."""
    trigger = rest(address, f"/jobs/{job_id}/stop", {"targetDirectory": target_dir, "drain": False})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = rest(address, f"/jobs/{job_id}/savepoints/{trigger['request-id']}")
        if answer["status"]["id"] == "COMPLETED":
            operation = answer.get("operation", {})
            if "location" not in operation:
                raise ClusterError(f"savepoint of {job_id} failed: {operation.get('failure-cause')}")
            # Return only once the job has ended: its successor must not run beside it.
            while rest(address, f"/jobs/{job_id}")["state"] != "FINISHED":
                if time.monotonic() > deadline:
                    raise ClusterError(f"job {job_id} did not finish after its savepoint")
                time.sleep(POLL_INTERVAL_S)
            return operation["location"]
        time.sleep(POLL_INTERVAL_S)
    raise ClusterError(f"savepoint of {job_id} not complete after {timeout:.0f} s")


def cancel(address: str, job_id: str) -> None:
    """Cancel the job without a savepoint (its retained checkpoints stay)."""
    rest(address, f"/jobs/{job_id}?mode=cancel", method="PATCH")


def latest_savepoint(savepoint_dir: str) -> str | None:
    """The newest complete savepoint (one with _metadata) under a local savepoint directory."""
    root = Path(savepoint_dir.removeprefix("file://"))
    complete = [metadata.parent for metadata in root.glob("savepoint-*/_metadata")]
    return max(complete, key=lambda path: path.stat().st_mtime).as_uri() if complete else None
