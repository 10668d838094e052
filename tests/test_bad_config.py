"""Bad configuration fails fast, naming the file and line (or the endpoint) at fault."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from pipelines.detect.detections import DETECTIONS_DIR, DetectionError, load_detection, load_detections
from pipelines.incidents.alert_state import Delivery
from pipelines.incidents.routing import load_router
from pipelines.incidents.sinks import DeliveryError
from pipelines.infra import kafka_broker
from pipelines.infra.config import ConfigError, load_config
from pipelines.stream.privacy import load_privacy

DETECTION = "restricted_region_access"


@pytest.fixture
def detection_dir(tmp_path: Path) -> Path:
    """A copy of one shipped detection, to break in each test."""
    (tmp_path / DETECTION).mkdir()
    for name in ("rule.yml", "query.sql"):
        shutil.copy(DETECTIONS_DIR / DETECTION / name, tmp_path / DETECTION / name)
    return tmp_path


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "usagewatch.yml"
    path.write_text(text)
    return str(path)


# --- detections -----------------------------------------------------------------------------------


def test_the_copied_detection_loads(detection_dir):
    assert load_detection(detection_dir / DETECTION).id == DETECTION


def test_an_unknown_detection_parameter_names_the_yaml_line(detection_dir):
    yml = detection_dir / DETECTION / "rule.yml"
    yml.write_text(
        yml.read_text().replace(
            "parameters:\n", "parameters:\n  min_requestz:\n    value: 3\n    description: a typo\n", 1
        )
    )
    with pytest.raises(
        DetectionError, match=rf"{DETECTION}/rule\.yml:{line_of(yml, 'parameters:')}: .*min_requestz"
    ):
        load_detections(detection_dir)


def test_a_parameter_the_sql_uses_but_the_yaml_lacks_names_the_sql_file(detection_dir):
    sql = detection_dir / DETECTION / "query.sql"
    sql.write_text(sql.read_text().replace("$min_requests", "$min_request_count", 1))
    with pytest.raises(DetectionError, match=rf"{DETECTION}/query\.sql: .*min_request_count"):
        load_detections(detection_dir)


def test_malformed_detection_yaml_names_the_line(detection_dir):
    yml = detection_dir / DETECTION / "rule.yml"
    lines = yml.read_text().splitlines()
    lines.insert(3, "title: [unclosed")
    yml.write_text("\n".join(lines) + "\n")
    with pytest.raises(DetectionError, match=rf"{DETECTION}/rule\.yml:\d+: invalid YAML"):
        load_detections(detection_dir)


def test_detection_sql_that_does_not_parse_names_the_file_and_line(detection_dir):
    sql = detection_dir / DETECTION / "query.sql"
    text = sql.read_text()
    sql.write_text(
        text.replace("group by account_id, window_start", "group by by account_id, window_start", 1)
    )
    broken_line = line_of(sql, "group by by")
    # DuckDB's parser error carries "LINE n:" counted within the statement, which starts the file.
    with pytest.raises(DetectionError, match=rf"(?s){DETECTION}/query\.sql: .*LINE {broken_line}:"):
        load_detections(detection_dir)


# --- usagewatch.yml -------------------------------------------------------------------------------


def test_malformed_configuration_yaml_names_the_line(tmp_path):
    path = write_config(tmp_path, "lake:\n  path: lake\nrouting:\n  sinks: [\n")
    with pytest.raises(ConfigError, match=r"usagewatch\.yml:5: invalid YAML"):
        load_config(path)


def test_an_unknown_section_names_its_line(tmp_path):
    path = write_config(tmp_path, "lake:\n  path: lake\nalerting:\n  sinks: []\n")
    with pytest.raises(ConfigError, match=r"usagewatch\.yml:3: unknown section 'alerting'"):
        load_config(path)


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ("  truncate_ip: {ipv4_prefix: 33, ipv6_prefix: 48}", r"ipv4_prefix must be an integer from 0 to 32"),
        ("  truncate_ip: {ipv4_prefix: 24}", r"truncate_ip must be a mapping of exactly"),
        ("  pseudonymise_api_key_id: yes please", r"pseudonymise_api_key_id must be true or false"),
        # pepper_env is missing: the nearest line is the section's
        ("  pseudonymise_api_key_id: true", r"pepper_env must name the environment variable"),
        ("  hash_everything: true", r"unknown key\(s\) in privacy: \['hash_everything'\]"),
    ],
)
def test_a_bad_privacy_section_names_the_file_and_line(tmp_path, privacy, message):
    path = write_config(tmp_path, f"lake:\n  path: lake\nprivacy:\n{privacy}\n")
    # named at the offending key's own line (4), not the section's (3), unless the key is missing
    line = 3 if "pepper_env" in message else 4
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:{line}: .*{message}"):
        load_privacy(load_config(path))


def test_a_section_that_is_not_a_mapping_names_its_line(tmp_path):
    path = write_config(tmp_path, "lake:\n  path: lake\nrouting: [slack]\n")
    with pytest.raises(ConfigError, match=r"usagewatch\.yml:3: section 'routing' must be a mapping"):
        load_router(load_config(path))


# --- unreachable broker ---------------------------------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_alert_broker_fails_within_the_routing_timeout_naming_it(tmp_path):
    endpoint = f"127.0.0.1:{closed_port()}"
    path = write_config(
        tmp_path,
        "routing:\n  timeout_seconds: 1\n  sinks:\n"
        f"    - {{name: k, type: kafka, bootstrap: '{endpoint}'}}\n",
    )
    sink = load_router(load_config(path)).sinks["k"]
    incident = {"incident_id": "i", "dedup_key": "i", "change": "opened"}
    with pytest.raises(DeliveryError, match=endpoint):
        sink.send(Delivery(1, "i", "k", "opened", "trigger", 0, incident))


def test_creating_topics_on_an_unreachable_broker_names_the_endpoint_within_its_timeout():
    endpoint = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaError, match=endpoint):
        kafka_broker.ensure_topics(endpoint, {"access-events": 1}, timeout=2)
    # kafka-python's admin client alone would wait its 30 s bootstrap default before failing
    assert time.monotonic() - started < 15


# --- strict configuration (issue 11, finding 7) ---------------------------------------------------

SINKS = "  sinks:\n    - {name: a, type: jsonl, path: a.jsonl}\n"


def test_a_duplicated_section_is_refused_naming_both_lines(tmp_path):
    # Last-one-wins would silently drop sink a.
    path = write_config(
        tmp_path,
        "routing:\n" + SINKS + "lake:\n  path: lake\nrouting:\n  sinks:\n    - {name: b, type: stdout}\n",
    )
    with pytest.raises(
        ConfigError,
        match=r"usagewatch\.yml:6: invalid YAML: duplicate key 'routing' \(first on line 1, again on line 6",
    ):
        load_config(path)


def test_a_duplicated_key_inside_a_section_is_refused(tmp_path):
    path = write_config(tmp_path, "routing:\n  timeout_seconds: 5\n" + SINKS + "  timeout_seconds: 50\n")
    with pytest.raises(
        ConfigError, match=r"usagewatch\.yml:5: .*duplicate key 'timeout_seconds' \(first on line 2"
    ):
        load_config(path)


def _readers():
    from pipelines.commands.schedule import load_jobs
    from pipelines.incidents.alert_state import state_path
    from pipelines.lake.analyst import analyst_limits
    from pipelines.lake.layout import lake_path
    from pipelines.quality.settings import quality_settings

    return {
        "lake": lake_path,
        "state": state_path,
        "routing": load_router,
        "schedule": load_jobs,
        "quality": quality_settings,
        "privacy": load_privacy,
        "analyst": analyst_limits,
    }


@pytest.mark.parametrize("section", ["lake", "state", "routing", "schedule", "quality", "privacy", "analyst"])
def test_an_unknown_key_is_refused_in_every_section_at_its_own_line(tmp_path, section):
    path = write_config(tmp_path, f"# a comment\n{section}:\n  pathh: typo\n")
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:3: unknown key\(s\) in {section}: \['pathh'\]"):
        _readers()[section](load_config(path))


@pytest.mark.parametrize(
    ("text", "key_line", "message"),
    [
        (
            "routing:\n  timeout_seconds: .nan\n",
            2,
            r"routing\.timeout_seconds must be a finite number, not nan",
        ),
        (
            "routing:\n  retry:\n    backoff_seconds: .inf\n",
            3,
            r"routing\.retry\.backoff_seconds must be a finite",
        ),
        (
            "analyst:\n  timeout_seconds: -.inf\n",
            2,
            r"analyst\.timeout_seconds must be a finite number, not -inf",
        ),
    ],
)
def test_non_finite_numbers_are_refused_at_load_naming_the_key_line(tmp_path, text, key_line, message):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:{key_line}: {message}"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key_line", "message"),
    [
        (
            "routing:\n  retry:\n    attempts: 1.0e+9\n",
            3,
            r"routing\.retry\.attempts must be a number from 1 to 100",
        ),
        (
            "routing:\n  retry:\n    attempts: 1000000000\n",
            3,
            r"routing\.retry\.attempts must be a number from",
        ),
        (
            "routing:\n  retry:\n    attempts: 1e9\n",
            3,
            r"routing\.retry\.attempts must be a number from 1 to 100, got '1e9'",
        ),
        (
            "routing:\n" + SINKS + "  timeout_seconds: -1\n",
            4,
            r"routing\.timeout_seconds must be a number from 0\.01",
        ),
        (
            "routing:\n  retry:\n    max_backoff_seconds: 1.0e+12\n",
            3,
            r"routing\.retry\.max_backoff_seconds must be a number from 0 to",
        ),
        (
            "analyst:\n  threads: 4\n  timeout_seconds: -5\n",
            3,
            r"analyst\.timeout_seconds must be a number from 0\.1",
        ),
        ("analyst:\n  threads: 0\n", 2, r"analyst\.threads must be a whole number from 1 to 256"),
        ("analyst:\n  threads: 1.5\n", 2, r"analyst\.threads must be a whole number"),
        ("analyst:\n  memory_limit: lots\n", 2, r"analyst\.memory_limit must be a size such as 2GiB"),
    ],
)
def test_absurd_numbers_are_refused_naming_the_key_line(tmp_path, text, key_line, message):
    from pipelines.lake.analyst import analyst_limits

    config = load_config(write_config(tmp_path, text))
    reader = analyst_limits if text.startswith("analyst") else load_router
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:{key_line}: {message}"):
        reader(config)


def test_a_configuration_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "usagewatch.yml"
    path.write_bytes("lake:\n  path: lake\nstate:\n  path: caf\u00e9.duckdb\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"usagewatch\.yml:4: not UTF-8 text \(byte 0xe9\)"):
        load_config(str(path))


def test_a_duplicated_key_in_a_detection_is_refused_naming_both_lines(detection_dir):
    yml = detection_dir / DETECTION / "rule.yml"
    text = yml.read_text()
    yml.write_text(text + "severity: info\n")
    first, again = line_of(yml, "severity:"), len(yml.read_text().splitlines())
    with pytest.raises(
        DetectionError,
        match=rf"{DETECTION}/rule\.yml:{again}: .*duplicate key 'severity' \(first on line {first}",
    ):
        load_detections(detection_dir)
