"""Static checks of the Docker deployment (no Docker engine needed): docker/docker-compose.yml and
docker/flink/Dockerfile must agree with the pinned versions, the job's arguments and the topic constants."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import xml.etree.ElementTree as ET

import pytest
import yaml

from jobs.usage_aggregates import build_arg_parser
from pipelines.infra.kafka_broker import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, PROJECT_TOPICS
from pipelines.infra.paths import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
FLINK_DOCKERFILE = DOCKER_DIR / "flink" / "Dockerfile"
KAFKA_POM = DOCKER_DIR / "deps" / "kafka" / "pom.xml"
POM_NAMESPACE = "http://maven.apache.org/POM/4.0.0"
IMAGE_APP_DIR = "/opt/usagewatch"  # where the Dockerfile copies the repository's pipelines/ jobs/ ...
SERVICES = {"kafka", "kafka-init", "lake-permissions", "jobmanager", "taskmanager", "submit"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return FLINK_DOCKERFILE.read_text()


def split_submit_command(services: dict) -> tuple[list[str], list[str]]:
    """(Flink CLI part, job arguments): the CLI hands everything after `--` to the script."""
    command = [str(token) for token in services["submit"]["command"]]
    start = command.index("flink")
    if start:
        # A shell guard in front must hand over to the CLI call ($$ is Compose's escape for $).
        assert command[:2] == ["/bin/sh", "-ec"] and 'exec "$$@"' in command[2], command[:start]
    command = command[start:]
    assert command[1] == "run", command
    assert "--" in command, "job arguments must follow `--` so Flink's CLI does not claim them"
    separator = command.index("--")
    return command[:separator], command[separator + 1 :]


def cli_option(cli: list[str], name: str) -> str:
    assert name in cli, f"submit command lacks {name}: {cli}"
    return cli[cli.index(name) + 1]


def flink_properties(service: dict) -> dict[str, str]:
    """FLINK_PROPERTIES as the image's entrypoint reads it: whitespace dropped, split at the first colon."""
    properties = {}
    for line in service["environment"]["FLINK_PROPERTIES"].splitlines():
        line = re.sub(r"\s", "", line)
        if line:
            key, _, value = line.partition(":")
            properties[key] = value
    return properties


def volume_targets(service: dict) -> set[str]:
    return {volume.rsplit(":", 1)[1] for volume in service["volumes"]}


def test_every_service_is_defined(services: dict) -> None:
    assert set(services) == SERVICES


def test_kafka_image_matches_the_maven_broker_version(services: dict) -> None:
    project = ET.parse(KAFKA_POM).getroot()
    pom_version = project.findtext("m:properties/m:kafka.version", namespaces={"m": POM_NAMESPACE})
    assert pom_version
    for name in ("kafka", "kafka-init"):
        assert services[name]["image"] == f"apache/kafka:{pom_version}"


def test_kafka_runs_kraft_without_zookeeper(services: dict, dockerfile: str) -> None:
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    controller_port = re.search(r"CONTROLLER://:(\d+)", env["KAFKA_LISTENERS"]).group(1)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:{controller_port}"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "zookeeper" not in COMPOSE_FILE.read_text().lower()
    assert "zookeeper" not in dockerfile.lower()


def test_kafka_host_listener_is_published_on_loopback(services: dict) -> None:
    env = services["kafka"]["environment"]
    host_port = re.search(r"HOST://localhost:(\d+)", env["KAFKA_ADVERTISED_LISTENERS"]).group(1)
    assert f"127.0.0.1:{host_port}:{host_port}" in services["kafka"]["ports"]
    assert "127.0.0.1:8081:8081" in services["jobmanager"]["ports"]


def test_flink_base_image_matches_installed_pyflink(services: dict, dockerfile: str) -> None:
    pyflink_version = importlib.metadata.version("apache-flink")
    assert re.search(r"^ARG FLINK_VERSION=(\S+)$", dockerfile, re.M).group(1) == pyflink_version
    assert re.search(r"^ARG FLINK_IMAGE=(\S+)$", dockerfile, re.M).group(1) == (
        "flink:${FLINK_VERSION}-scala_2.12-java17"
    )
    assert '"apache-flink==${FLINK_VERSION}"' in dockerfile
    for name in ("jobmanager", "taskmanager", "submit"):
        assert services[name]["image"] == f"usagewatch-flink:{pyflink_version}"
        assert services[name]["build"] == {"context": "..", "dockerfile": "docker/flink/Dockerfile"}


def test_dockerfile_copies_existing_repository_paths(dockerfile: str) -> None:
    local_copies = re.findall(r"^COPY (?!--from)(\S+) (\S+)$", dockerfile, re.M)
    assert local_copies
    for source, _ in local_copies:
        assert (REPO_ROOT / source).exists(), f"{FLINK_DOCKERFILE}: COPY source {source} missing"
    targets = {target for _, target in local_copies}
    assert {f"{IMAGE_APP_DIR}/{part}" for part in ("pipelines", "jobs", "schemas", "sql")} <= targets
    for pom in re.findall(r"mvn .*?-f (\S+)", dockerfile):
        assert (REPO_ROOT / pom).is_file(), f"{FLINK_DOCKERFILE}: {pom} missing"


def test_submit_runs_the_aggregation_job_with_the_library(services: dict) -> None:
    cli, _ = split_submit_command(services)
    assert cli_option(cli, "--jobmanager") == "jobmanager:8081"
    script = cli_option(cli, "--python")
    assert script == f"{IMAGE_APP_DIR}/jobs/usage_aggregates.py"
    assert (REPO_ROOT / script.removeprefix(f"{IMAGE_APP_DIR}/")).is_file()
    assert cli_option(cli, "--pyFiles") == f"{IMAGE_APP_DIR}/pipelines"


def test_submit_passes_only_options_the_job_accepts(services: dict) -> None:
    _, job_args = split_submit_command(services)
    parser = build_arg_parser()
    # Exact names: argparse would also accept abbreviations, which break when options are added.
    known = {option for action in parser._actions for option in action.option_strings}
    passed = [token for token in job_args if token.startswith("--")]
    assert passed
    assert set(passed) <= known, f"unknown job options: {set(passed) - known}"
    args = parser.parse_args(job_args)

    kafka_env = services["kafka"]["environment"]
    assert args.source == "kafka"
    assert f"INTERNAL://{args.bootstrap_servers}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert (args.topic, args.dlq_topic) == (EVENTS_TOPIC, DLQ_TOPIC)
    # The image has the connector jars in /opt/flink/lib; shipping them again would load them twice.
    assert args.pipeline_jars == "none"

    properties = flink_properties(services["taskmanager"])
    mounted = volume_targets(services["taskmanager"])
    assert args.lake_dir in mounted
    assert args.checkpoint_dir == properties["execution.checkpointing.dir"]
    assert args.checkpoint_dir.removeprefix("file://") in mounted
    assert args.parallelism <= int(properties["taskmanager.numberOfTaskSlots"])


def test_flink_processes_share_config_and_volumes(compose: dict, services: dict) -> None:
    jobmanager, taskmanager = services["jobmanager"], services["taskmanager"]
    assert flink_properties(jobmanager) == flink_properties(taskmanager)
    properties = flink_properties(taskmanager)
    assert properties["jobmanager.rpc.address"] == "jobmanager"
    assert properties["python.executable"] == "python3"
    assert jobmanager["volumes"] == taskmanager["volumes"] == services["submit"]["volumes"]
    assert volume_targets(taskmanager) == {"/data/lake", "/data/checkpoints"}
    named = {volume.split(":")[0] for volume in taskmanager["volumes"] if not volume.startswith(("$", "."))}
    assert named <= set(compose["volumes"])


def test_startup_order_waits_for_health_and_topics(services: dict) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("kafka-init") == {"kafka": "service_healthy"}
    assert conditions("taskmanager") == {"jobmanager": "service_healthy"}
    assert conditions("submit") == {
        "kafka-init": "service_completed_successfully",
        "jobmanager": "service_healthy",
        "taskmanager": "service_started",
    }
    for name in ("kafka", "jobmanager"):
        assert services[name]["healthcheck"]["test"]
    assert "8081/overview" in " ".join(services["jobmanager"]["healthcheck"]["test"])


def test_init_creates_the_project_topics(services: dict) -> None:
    script = " ".join(services["kafka-init"]["command"])
    created = {}
    for line in script.splitlines():
        tokens = shlex.split(line)
        if tokens and tokens[0].endswith("kafka-topics.sh"):
            assert "--create" in tokens and "--if-not-exists" in tokens, line
            created[tokens[tokens.index("--topic") + 1]] = int(tokens[tokens.index("--partitions") + 1])
    assert created == PROJECT_TOPICS
    assert set(created) == {EVENTS_TOPIC, DLQ_TOPIC, ALERTS_TOPIC}
