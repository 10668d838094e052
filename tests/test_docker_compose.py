"""Static checks of the container deployment (no container engine needed): docker/docker-compose.yml and
docker/Dockerfile must agree with the pinned versions, the job's arguments and the topic constants.
tests/test_container_stack.py builds and runs them."""

from __future__ import annotations

import importlib.metadata
import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from jobs.usage_aggregates import build_arg_parser
from pipelines.infra.kafka_broker import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, PROJECT_TOPICS
from pipelines.infra.paths import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
KAFKA_POM = DOCKER_DIR / "deps" / "kafka" / "pom.xml"
POM_NAMESPACE = "http://maven.apache.org/POM/4.0.0"
IMAGE_APP_DIR = "/opt/usagewatch"  # where the Dockerfile copies the repository's pipelines/ jobs/ ...
SERVICES = {"kafka", "jobmanager", "taskmanager", "submit"}
# ${NAME:-default} as compose reads it with NAME unset; $$ is compose's escape for $.
COMPOSE_VARIABLE = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}|\$(\$)")
# The settings that say where this deployment's processes are and how big; everything else is shared
# with the Kubernetes manifest (tests/test_k8s_manifest.py).
DEPLOYMENT_SPECIFIC_SETTINGS = {
    "jobmanager.rpc.address",
    "jobmanager.memory.process.size",
    "taskmanager.memory.process.size",
    "pekko.startup-timeout",
}


def with_defaults(value):
    """The compose file's value with every variable at its default, as `compose config` shows it."""
    if isinstance(value, str):
        return COMPOSE_VARIABLE.sub(lambda match: match.group(1) or match.group(2), value)
    if isinstance(value, dict):
        return {key: with_defaults(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_defaults(item) for item in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return with_defaults(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def split_submit_command(services: dict) -> tuple[list[str], list[str]]:
    """(Flink CLI part, job arguments): the CLI hands everything after `--` to the script."""
    command = [str(token) for token in services["submit"]["command"]]
    start = command.index("flink")
    if start:
        # A shell guard in front must hand over to the CLI call.
        assert command[:2] == ["/bin/sh", "-ec"] and 'exec "$@"' in command[2], command[:start]
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


def test_kafka_image_matches_the_maven_broker_version(services: dict, dockerfile: str) -> None:
    project = ET.parse(KAFKA_POM).getroot()
    pom_version = project.findtext("m:properties/m:kafka.version", namespaces={"m": POM_NAMESPACE})
    assert pom_version
    # The image runs the jars that pom fetched into .deps/kafka.
    assert services["kafka"]["image"] == f"usagewatch-kafka:{pom_version}"
    assert services["kafka"]["build"]["target"] == "kafka"
    assert re.search(r"^COPY \.deps/kafka/ ", dockerfile, re.M)


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
    container_port = re.search(r"HOST://:(\d+)", env["KAFKA_LISTENERS"]).group(1)
    assert f"127.0.0.1:{host_port}:{container_port}" in services["kafka"]["ports"]
    assert "127.0.0.1:8081:8081" in services["jobmanager"]["ports"]


def test_flink_image_matches_installed_pyflink(services: dict, dockerfile: str) -> None:
    pyflink_version = importlib.metadata.version("apache-flink")
    assert re.search(r"^ARG FLINK_VERSION=(\S+)$", dockerfile, re.M).group(1) == pyflink_version
    assert '"apache-flink==${FLINK_VERSION}"' in dockerfile
    for name in ("jobmanager", "taskmanager", "submit"):
        assert services[name]["image"] == f"usagewatch-flink:{pyflink_version}"
    # One service builds the image the others run (a build per service would repeat it).
    assert [name for name in services if "build" in services[name]] == ["kafka", "jobmanager"]
    assert services["jobmanager"]["build"]["target"] == "flink"


def test_images_build_from_a_debian_base_chosen_at_build_time(services: dict, dockerfile: str) -> None:
    # The official image by default; the debootstrapped one where no registry is reachable.
    assert re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M).group(1) == "debian:bookworm-slim"
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", dockerfile, re.M)
    assert stages == [("${BASE_IMAGE}", "java"), ("java", "kafka"), ("java", "flink")]
    for name in ("kafka", "jobmanager"):
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == ("..", "docker/Dockerfile")
        assert build["args"] == {"BASE_IMAGE": "debian:bookworm-slim"}


def test_dockerfile_copies_existing_repository_paths(dockerfile: str) -> None:
    local_copies = re.findall(r"^COPY (?!--from)(\S+) (\S+)$", dockerfile, re.M)
    assert local_copies
    for source, _ in local_copies:
        if source.startswith(".deps/"):
            # Made by scripts/bootstrap.sh, not in a fresh clone: one of the folders it fills.
            assert source.split("/")[1] in {"kafka", "flink", "udf"}, f"{DOCKERFILE}: COPY {source}"
        else:
            assert (REPO_ROOT / source).exists(), f"{DOCKERFILE}: COPY source {source} missing"
    targets = {target for _, target in local_copies}
    assert {f"{IMAGE_APP_DIR}/{part}" for part in ("pipelines", "jobs", "schemas", "sql")} <= targets
    ignored = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().split()
    assert ".deps" not in ignored and ".venv" in ignored


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


def test_submit_waits_for_the_broker_topics_and_jobmanager(services: dict) -> None:
    # podman-compose orders starts by depends_on but does not wait on health: submit waits itself.
    assert services["taskmanager"]["depends_on"] == ["jobmanager"]
    assert set(services["submit"]["depends_on"]) == {"kafka", "jobmanager", "taskmanager"}
    script = services["submit"]["command"][2]
    _, job_args = split_submit_command(services)
    bootstrap = build_arg_parser().parse_args(job_args).bootstrap_servers
    assert f'wait_and_ensure_topics("{bootstrap}", ' in script
    rest_address = cli_option(split_submit_command(services)[0], "--jobmanager")
    assert f"curl -fsS -o /dev/null http://{rest_address}/overview" in script
    assert script.index("wait_and_ensure_topics") < script.index("/overview") < script.index('exec "$@"')
    assert set(PROJECT_TOPICS) == {EVENTS_TOPIC, DLQ_TOPIC, ALERTS_TOPIC}
