"""The local Apache Kafka broker: one KRaft process acting as broker and controller on 127.0.0.1.

Runs the official Kafka 4.1 jars fetched into KAFKA_LIBS_DIR by scripts/bootstrap.sh; state (config,
data, logs, PID file) lives under RUN_DIR/kafka. Only the process recorded in our PID file, and only if
its command line is our broker with our config, is ever signalled.

A BrokerNode is one such server process; the 3-node cluster of `usagewatch cluster` (pipelines.infra.cluster)
runs three of them with its own quorum and replication settings, through the same functions.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from pipelines.infra import processes
from pipelines.infra.config import ConfigError
from pipelines.infra.paths import KAFKA_LIBS_DIR, RUN_DIR
from pipelines.infra.processes import POLL_INTERVAL_S, STOP_TIMEOUT_S

EVENTS_TOPIC = "access-events"
DLQ_TOPIC = "access-events.dlq"
ALERTS_TOPIC = "alerts"
# Partitions per project topic: events are keyed by account_id and spread over 4 partitions so the
# Flink source runs in parallel; the DLQ and alerts are low-volume and keep a single total order.
PROJECT_TOPICS = {EVENTS_TOPIC: 4, DLQ_TOPIC: 1, ALERTS_TOPIC: 1}

HOST = "127.0.0.1"
BROKER_PORT_ENV = "USAGEWATCH_KAFKA_PORT"
CONTROLLER_PORT_ENV = "USAGEWATCH_KAFKA_CONTROLLER_PORT"
DEFAULT_BROKER_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
NODE_ID = 1
MAIN_CLASS = "kafka.Kafka"

KAFKA_RUN_DIR = RUN_DIR / "kafka"
CONFIG_FILE = KAFKA_RUN_DIR / "server.properties"
PID_FILE = KAFKA_RUN_DIR / "kafka.pid"
# Serialises start/stop between concurrent callers (two pytest sessions, a CLI call during a test).
LOCK_FILE = KAFKA_RUN_DIR / ".lock"

START_TIMEOUT_S = 60.0


class BrokerError(RuntimeError):
    """The local broker could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerNode:
    """One KRaft server process (broker and controller) on loopback and the files it owns in run_dir."""

    node_id: int
    port: int
    controller_port: int
    run_dir: Path
    # How the node finds the controller quorum (controller.quorum.* settings).
    quorum: Mapping[str, str]
    # StorageTool options naming the initial controllers; none for a static controller.quorum.voters.
    format_options: tuple[str, ...] = ()
    # Replicas of the internal topics (offsets, transactions) and of topics created without a count,
    # and how many of them must acknowledge an acks=all write.
    replication: int = 1
    min_insync_replicas: int = 1

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.run_dir / CONFIG_FILE.name

    @property
    def pid_file(self) -> Path:
        return self.run_dir / PID_FILE.name

    @property
    def log4j_config_file(self) -> Path:
        return self.run_dir / "log4j2.properties"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def console_log(self) -> Path:
        # The JVM's own stdout/stderr: catches failures that happen before log4j is configured.
        return self.log_dir / "console.log"


@dataclass(frozen=True)
class StartResult:
    pid: int
    bootstrap: str
    already_running: bool
    seconds: float


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str


def _port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        # A setting the operator gave, not a broker failure: exit code 2 like any configuration error.
        raise ConfigError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def broker_port() -> int:
    return _port_from_env(BROKER_PORT_ENV, DEFAULT_BROKER_PORT)


def controller_port() -> int:
    return _port_from_env(CONTROLLER_PORT_ENV, DEFAULT_CONTROLLER_PORT)


def bootstrap_servers() -> str:
    """Address clients use to reach the local broker."""
    return f"{HOST}:{broker_port()}"


def _dev_node(port: int, cport: int) -> BrokerNode:
    """The single-node dev broker of `usagewatch kafka start`."""
    return BrokerNode(
        node_id=NODE_ID,
        port=port,
        controller_port=cport,
        run_dir=KAFKA_RUN_DIR,
        # Dynamic quorum (KIP-853): the single controller is formatted with --standalone.
        quorum={"controller.quorum.bootstrap.servers": f"{HOST}:{cport}"},
        format_options=("--standalone",),
        # One node: internal topics cannot have more replicas than brokers.
        replication=1,
        min_insync_replicas=1,
    )


def server_properties(node: BrokerNode) -> str:
    port, cport = node.port, node.controller_port
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        **node.quorum,
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.data_dir,
        "num.partitions": 4,
        "default.replication.factor": node.replication,
        "min.insync.replicas": node.min_insync_replicas,
        "offsets.topic.replication.factor": node.replication,
        "transaction.state.log.replication.factor": node.replication,
        "transaction.state.log.min.isr": node.min_insync_replicas,
        "share.coordinator.state.topic.replication.factor": node.replication,
        "share.coordinator.state.topic.min.isr": node.min_insync_replicas,
        # Consumers join immediately instead of waiting 3 s for more group members.
        "group.initial.rebalance.delay.ms": 0,
        # Topics are created on purpose (`usagewatch kafka topics`); a typo must not create one.
        "auto.create.topics.enable": "false",
        # The broker, not the producer, stamps each record: the aggregation job bounds event times by
        # this arrival time and caps its watermark there (flink_job.source_ddl), so it must be unforgeable.
        "log.message.timestamp.type": "LogAppendTime",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    return "# Written by usagewatch; regenerated on every start.\n" + "\n".join(lines) + "\n"


def _server_properties(port: int, cport: int) -> str:
    return server_properties(_dev_node(port, cport))


def _log4j_config(server_log: Path) -> str:
    # Size-capped so a long-running dev broker cannot fill the disk.
    return f"""status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {server_log}
appender.file.filePattern = {server_log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise BrokerError("java not found (set JAVA_HOME or put a JDK 17 on PATH)")
    return java


def _classpath() -> str:
    if not any(KAFKA_LIBS_DIR.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"Kafka broker jars missing in {KAFKA_LIBS_DIR}: run scripts/bootstrap.sh")
    # The JVM expands the wildcard itself; no shell is involved.
    return str(KAFKA_LIBS_DIR / "*")


def _new_cluster_id() -> str:
    # Kafka's own format: a random UUID, base64url without padding (22 characters).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage_once(node: BrokerNode, java: str, classpath: str, cluster_id: str) -> None:
    if (node.data_dir / "meta.properties").exists():
        return
    node.data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        java,
        f"-Dlog4j2.configurationFile={node.log4j_config_file}",
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        *node.format_options,
        # One argument: an id may start with "-" (base64url), which argparse would take for an option.
        f"--cluster-id={cluster_id}",
        "-c",
        str(node.config_file),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"formatting {node.data_dir} failed:\n{result.stdout}{result.stderr}")


def running_pid(node: BrokerNode) -> int | None:
    """The node's broker process if it is running and is ours (kafka.Kafka with its config), else None."""
    return processes.running_pid(node.pid_file, MAIN_CLASS, str(node.config_file))


def _ensure_port_free(port: int, pid_file: Path, hint: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same option the broker's acceptor uses, so sockets in TIME_WAIT don't count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise BrokerError(
                f"{HOST}:{port} is already in use by another process (not the broker in {pid_file}); "
                f"stop it or {hint}"
            ) from error


def _log_tail(node: BrokerNode, lines: int = 40) -> str:
    parts = []
    for log in (node.console_log, node.server_log):
        if log.exists() and log.stat().st_size:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- last lines of {log} ---\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no log written under {node.log_dir})"


def _broker_answers(port: int) -> bool:
    return broker_answers(f"{HOST}:{port}")


def broker_answers(bootstrap: str) -> bool:
    """True if the broker at bootstrap (one host:port) answers a metadata request now."""
    host, _, port = bootstrap.rpartition(":")
    # A plain connect fails instantly while nothing listens; only then pay for a metadata round trip.
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    try:
        with KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="usagewatch-probe",
            bootstrap_timeout_ms=2000,
            request_timeout_ms=2000,
        ) as admin:
            admin.list_topics()
    except KafkaError:
        return False
    return True


def launch(node: BrokerNode, cluster_id: str, port_hint: str) -> subprocess.Popen:
    """Write the node's config, format its storage on first use and start its process (not waiting).

    Nodes of one cluster share cluster_id. port_hint tells the user how to pick other ports.
    """
    java, classpath = _java(), _classpath()
    _ensure_port_free(node.port, node.pid_file, port_hint)
    _ensure_port_free(node.controller_port, node.pid_file, port_hint)
    node.log_dir.mkdir(parents=True, exist_ok=True)
    node.config_file.write_text(server_properties(node))
    node.log4j_config_file.write_text(_log4j_config(node.server_log))
    _format_storage_once(node, java, classpath, cluster_id)
    command = [
        java,
        "-Xmx512m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.log4j_config_file}",
        "-cp",
        classpath,
        MAIN_CLASS,
        str(node.config_file),
    ]
    process = processes.spawn(command, node.console_log)
    node.pid_file.write_text(f"{process.pid}\n")
    return process


def wait_until_serving(node: BrokerNode, process: subprocess.Popen, deadline: float) -> None:
    """Return once the node answers metadata requests; stop it and raise if it exits or times out."""
    while not _broker_answers(node.port):
        if process.poll() is not None:
            node.pid_file.unlink(missing_ok=True)
            raise BrokerError(
                f"broker exited with code {process.returncode} while starting\n{_log_tail(node)}"
            )
        if time.monotonic() > deadline:
            processes.stop_process(process.pid, STOP_TIMEOUT_S, node.pid_file)
            raise BrokerError(f"broker did not answer on {node.bootstrap} in time\n{_log_tail(node)}")
        time.sleep(POLL_INTERVAL_S)


def start(timeout: float = START_TIMEOUT_S) -> StartResult:
    """Start the broker unless ours is already running; returns once it answers metadata requests."""
    began = time.monotonic()
    node = _dev_node(broker_port(), controller_port())
    with processes.exclusive(LOCK_FILE):
        pid = running_pid(node)
        if pid is not None:
            return StartResult(pid, node.bootstrap, already_running=True, seconds=0.0)
        hint = f"choose other ports with {BROKER_PORT_ENV} / {CONTROLLER_PORT_ENV}"
        process = launch(node, _new_cluster_id(), hint)
        wait_until_serving(node, process, deadline=began + timeout)
        return StartResult(
            process.pid, node.bootstrap, already_running=False, seconds=time.monotonic() - began
        )


def stop_node(node: BrokerNode, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """Stop the node's broker (SIGTERM, then SIGKILL after `timeout`); its pid, or None if not running."""
    return processes.stop_recorded(node.pid_file, MAIN_CLASS, str(node.config_file), timeout=timeout)


def stop(timeout: float = STOP_TIMEOUT_S) -> int | None:
    """Stop our broker (SIGTERM, then SIGKILL after `timeout`); returns its pid, or None if not running."""
    with processes.exclusive(LOCK_FILE):
        return stop_node(_dev_node(broker_port(), controller_port()), timeout)


def status() -> BrokerStatus:
    pid = running_pid(_dev_node(broker_port(), controller_port()))
    return BrokerStatus(running=pid is not None, pid=pid, bootstrap=bootstrap_servers())


def wait_and_ensure_topics(bootstrap: str, timeout: float) -> None:
    """ensure_topics(PROJECT_TOPICS) once the broker at bootstrap answers: for a container that starts
    beside the broker (docker/docker-compose.yml) and cannot rely on start order."""
    deadline = time.monotonic() + timeout
    while not broker_answers(bootstrap):
        if time.monotonic() > deadline:
            raise BrokerError(f"no Kafka broker answered on {bootstrap} within {timeout:.0f} s")
        time.sleep(POLL_INTERVAL_S)
    ensure_topics(bootstrap, PROJECT_TOPICS)


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    replication: int = 1,
    timeout: float = 30.0,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create the topics ({name: partitions}) that do not exist yet and wait until all have leaders.

    configs (e.g. min.insync.replicas) apply to the topics created here, not to existing ones.
    """
    # The timeout bounds the bootstrap too: kafka-python's own default waits 30 s for a broker that is down.
    with KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="usagewatch-admin", bootstrap_timeout_ms=int(timeout * 1000)
    ) as admin:
        response = admin.create_topics(
            {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": replication,
                    "configs": dict(configs or {}),
                }
                for name, partitions in topics.items()
            },
            raise_errors=False,
        )
        for topic in response["topics"]:
            error = for_code(topic["error_code"])
            if topic["error_code"] != 0 and error is not TopicAlreadyExistsError:
                raise BrokerError(
                    f"creating topic {topic['name']!r} failed: {error.__name__} "
                    f"{topic.get('error_message') or ''}".rstrip()
                )
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout * 1000))
