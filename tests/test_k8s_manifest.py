"""Static checks of docker/k8s/flinkdeployment.yaml (no Kubernetes needed): it runs the aggregation job
with the pinned Flink, options the job accepts, and the same settings as docker-compose and the local
cluster that tests/test_cluster.py exercises."""

from __future__ import annotations

import importlib.metadata

import pytest
import yaml
from test_docker_compose import (
    COMPOSE_FILE,
    DEPLOYMENT_SPECIFIC_SETTINGS,
    IMAGE_APP_DIR,
    flink_properties,
    split_submit_command,
    with_defaults,
)

from jobs.usage_aggregates import build_arg_parser
from pipelines.infra.cluster import FLINK_DIST
from pipelines.infra.kafka_broker import DLQ_TOPIC, EVENTS_TOPIC
from pipelines.infra.paths import REPO_ROOT
from pipelines.stream.flink_job import PORTABLE_SETTINGS

MANIFEST = REPO_ROOT / "docker" / "k8s" / "flinkdeployment.yaml"
PYFLINK_VERSION = importlib.metadata.version("apache-flink")


@pytest.fixture(scope="module")
def deployment() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def compose_services() -> dict:
    return with_defaults(yaml.safe_load(COMPOSE_FILE.read_text()))["services"]


def driver_and_job_args(deployment: dict) -> tuple[list[str], list[str]]:
    """(PythonDriver options, job script arguments): the driver hands everything after `--` on."""
    args = [str(arg) for arg in deployment["spec"]["job"]["args"]]
    assert "--" in args, "job arguments must follow `--` so the Python driver does not claim them"
    return args[: args.index("--")], args[args.index("--") + 1 :]


def test_image_and_flink_version_match_installed_pyflink(deployment: dict, compose_services: dict) -> None:
    assert (deployment["apiVersion"], deployment["kind"]) == ("flink.apache.org/v1beta1", "FlinkDeployment")
    spec = deployment["spec"]
    assert spec["image"] == f"usagewatch-flink:{PYFLINK_VERSION}" == compose_services["jobmanager"]["image"]
    major, minor = PYFLINK_VERSION.split(".")[:2]
    assert spec["flinkVersion"] == f"v{major}_{minor}"


def test_python_driver_runs_the_job_script_with_the_library(deployment: dict) -> None:
    job = deployment["spec"]["job"]
    jar = job["jarURI"].removeprefix("local:///opt/flink/")
    # The image's /opt/flink/opt holds the same flink-python jar as the wheel's distribution.
    assert (FLINK_DIST / jar).is_file(), f"{job['jarURI']} is not Flink {PYFLINK_VERSION}'s Python jar"
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    driver, _ = driver_and_job_args(deployment)
    script = driver[driver.index("-py") + 1]
    assert script == f"{IMAGE_APP_DIR}/jobs/usage_aggregates.py"
    assert (REPO_ROOT / script.removeprefix(f"{IMAGE_APP_DIR}/")).is_file()
    assert driver[driver.index("-pyfs") + 1] == f"{IMAGE_APP_DIR}/pipelines"


def test_job_arguments_are_accepted_and_match_compose(deployment: dict, compose_services: dict) -> None:
    _, job_args = driver_and_job_args(deployment)
    parser = build_arg_parser()
    # Exact names: argparse would also accept abbreviations, which break when options are added.
    known = {option for action in parser._actions for option in action.option_strings}
    assert {token for token in job_args if token.startswith("--")} <= known
    args = parser.parse_args(job_args)
    assert (args.source, args.topic, args.dlq_topic, args.pipeline_jars) == (
        "kafka",
        EVENTS_TOPIC,
        DLQ_TOPIC,
        "none",
    )
    configuration = deployment["spec"]["flinkConfiguration"]
    assert args.checkpoint_dir == configuration["execution.checkpointing.dir"]
    mounted = [
        mount["mountPath"]
        for mount in deployment["spec"]["podTemplate"]["spec"]["containers"][0]["volumeMounts"]
    ]
    for path in (args.lake_dir, args.checkpoint_dir.removeprefix("file://")):
        assert any(path.startswith(f"{mount}/") for mount in mounted), f"{path} is not on a shared volume"
    assert args.parallelism == deployment["spec"]["job"]["parallelism"]

    # The same job as compose's submit, apart from where Kafka is.
    compose_args = vars(parser.parse_args(split_submit_command(compose_services)[1]))
    assert {k: v for k, v in vars(args).items() if k != "bootstrap_servers"} == {
        k: v for k, v in compose_args.items() if k != "bootstrap_servers"
    }


def test_flink_settings_match_compose_and_the_tested_cluster(
    deployment: dict, compose_services: dict
) -> None:
    configuration = {key: str(value) for key, value in deployment["spec"]["flinkConfiguration"].items()}
    compose = flink_properties(compose_services["jobmanager"])
    assert PORTABLE_SETTINGS.items() <= configuration.items()
    assert PORTABLE_SETTINGS.items() <= compose.items()
    # Compose also names the JobManager's address and sizes the processes (the operator sizes pods from
    # their resources); everything else is shared with the manifest.
    assert {k: v for k, v in compose.items() if k not in DEPLOYMENT_SPECIFIC_SETTINGS} == configuration
