"""The pinned versions agree: PyFlink vs. the Flink connector jars, constraints.txt vs. the venv."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from importlib.metadata import version as installed_version

import pytest

from pipelines.infra.paths import FLINK_CONNECTOR_JARS_DIR, REPO_ROOT

FLINK_POM = REPO_ROOT / "docker" / "deps" / "flink" / "pom.xml"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _pom_dependency_versions(pom_path) -> dict[str, str]:
    """artifactId -> version with ${property} references resolved."""
    root = ET.parse(pom_path).getroot()
    properties = {prop.tag.split("}")[1]: prop.text for prop in root.find("m:properties", POM_NS)}
    return {
        dependency.findtext("m:artifactId", namespaces=POM_NS): re.sub(
            r"\$\{([^}]+)\}",
            lambda ref: properties[ref.group(1)],
            dependency.findtext("m:version", namespaces=POM_NS),
        )
        for dependency in root.iterfind("m:dependencies/m:dependency", POM_NS)
    }


def _constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, pinned = line.split("==", 1)
            pins[_normalized(name)] = pinned.strip()
    return pins


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower().strip()


def test_kafka_connector_is_built_for_the_installed_pyflink():
    connector = _pom_dependency_versions(FLINK_POM)["flink-sql-connector-kafka"]

    # Connector versions are <connector release>-<Flink major.minor>, e.g. 5.0.0-2.2.
    assert connector.rsplit("-", 1)[1] == _major_minor(installed_version("apache-flink"))


def test_flink_parquet_matches_the_installed_pyflink():
    parquet = _pom_dependency_versions(FLINK_POM)["flink-parquet"]

    assert _major_minor(parquet) == _major_minor(installed_version("apache-flink"))


def test_fetched_connector_jar_is_the_version_the_pom_names():
    fetched = sorted(path.name for path in FLINK_CONNECTOR_JARS_DIR.glob("flink-sql-connector-kafka-*.jar"))
    if not fetched:
        pytest.skip(f"no connector jar in {FLINK_CONNECTOR_JARS_DIR} yet: run scripts/bootstrap.sh")
    connector = _pom_dependency_versions(FLINK_POM)["flink-sql-connector-kafka"]

    assert fetched == [f"flink-sql-connector-kafka-{connector}.jar"]


@pytest.mark.parametrize(
    "distribution", ["apache-flink", "pyarrow", "numpy", "pandas", "kafka-python", "duckdb"]
)
def test_installed_version_is_the_pinned_one(distribution):
    assert installed_version(distribution) == _constraint_pins()[distribution]


def test_pins_respect_the_apache_beam_caps():
    # apache-flink depends on apache-beam 2.61, which requires pyarrow < 17, numpy < 2.2, pandas < 2.3.
    pins = _constraint_pins()

    assert int(pins["pyarrow"].split(".")[0]) < 17
    assert tuple(map(int, pins["numpy"].split(".")[:2])) < (2, 2)
    assert tuple(map(int, pins["pandas"].split(".")[:2])) < (2, 3)
