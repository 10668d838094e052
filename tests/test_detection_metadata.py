"""Lint of every detection's YAML + SQL, and proof that the linter rejects broken detections."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.detect.detections import (
    DETECTIONS_DIR,
    DetectionError,
    known_techniques,
    load_detection,
    load_detections,
    rule_folders,
    run_detection,
)
from pipelines.incidents.alerts import SEVERITIES
from pipelines.lake.analyst import open_lake
from pipelines.stream.contracts import ALERT_SCHEMA, load_schema

RULE_FOLDERS = rule_folders()
VALID_YML = (DETECTIONS_DIR / "shared_hosting_infrastructure" / "rule.yml").read_text()
VALID_SQL = (DETECTIONS_DIR / "shared_hosting_infrastructure" / "query.sql").read_text()


def test_there_are_detections():
    assert {folder.name for folder in RULE_FOLDERS} >= {
        "restricted_region_access",
        "impossible_travel",
        "shared_hosting_infrastructure",
        "country_hopping",
        "shared_subnet_infrastructure",
        "shared_asn_infrastructure",
        "prompt_template_reuse",
        "shared_payment_fingerprint",
        "synchronized_traffic",
        "extraction_profile",
        "ring_clustering",
        "rate_limit_evasion",
    }


def test_severity_order_matches_alert_schema():
    assert list(SEVERITIES) == load_schema(ALERT_SCHEMA)["properties"]["severity"]["enum"]


@pytest.mark.parametrize("folder", RULE_FOLDERS, ids=lambda path: path.name)
def test_detection_metadata_is_valid(folder):
    detection = load_detection(folder)
    assert detection.id == folder.name
    assert detection.severity in SEVERITIES
    assert detection.runbook["investigate"].strip() and detection.runbook["respond"].strip()
    assert detection.false_positives and detection.tags
    for name, spec in detection.parameters.items():
        assert spec["description"].strip(), name


@pytest.mark.parametrize("folder", RULE_FOLDERS, ids=lambda path: path.name)
def test_every_detection_has_fixtures(folder):
    for name in ("positive.jsonl", "expected.yml"):
        assert (folder / name).is_file(), f"{folder.name} lacks fixture {name}"
    # Without negatives of its own, a detection is judged on the shared benign population with every trap.
    assert (folder / "negative.jsonl").is_file() or (DETECTIONS_DIR / "benign_traps.jsonl").is_file()


def write_detection(directory: Path, yml: str, sql: str = VALID_SQL, name: str = "candidate") -> Path:
    """A rule folder `name` under directory; returns the folder."""
    folder = directory / name
    folder.mkdir()
    (folder / "rule.yml").write_text(yml.replace("id: shared_hosting_infrastructure", f"id: {name}"))
    (folder / "query.sql").write_text(sql)
    return folder


def test_valid_copy_passes_lint(tmp_path):
    assert load_detection(write_detection(tmp_path, VALID_YML)).id == "candidate"


@pytest.mark.parametrize(
    ("yml", "sql", "message"),
    [
        (
            VALID_YML.replace("severity: high", "severity: urgent"),
            VALID_SQL,
            r"candidate/rule\.yml:7: severity: 'urgent' is not one of",
        ),
        (
            VALID_YML.replace("enabled: true", "enabled: yes please"),
            VALID_SQL,
            r"candidate/rule\.yml:\d+: enabled: 'yes please' is not of type 'boolean'",
        ),
        (VALID_YML.replace("suppression_minutes: 60", "suppression_minutes: true"), VALID_SQL, "suppression"),
        (
            VALID_YML.replace("entity_type: ip", "entity_type: host"),
            VALID_SQL,
            "entity_type: 'host' is not one of",
        ),
        (VALID_YML.replace("title:", "titel:"), VALID_SQL, "unknown key 'titel'"),
        (VALID_YML.replace("  respond: >", "  remedy: >"), VALID_SQL, r"runbook: .*'remedy' was unexpected"),
        (VALID_YML + "extra: [unclosed\n", VALID_SQL, r"candidate/rule\.yml:\d+: invalid YAML"),
        (
            VALID_YML,
            VALID_SQL.replace("$min_distinct_orgs", "$min_orgs"),
            r"candidate/query\.sql: .*\['min_orgs'\]",
        ),
        (VALID_YML, VALID_SQL.replace("$hydra_distinct_orgs", "100"), "declared but unused"),
        (VALID_YML, "create table alerts as select 1 as entity_id", r"candidate/query\.sql: only SELECT"),
        (
            VALID_YML,
            "select 1 as entity_id; select 2 as entity_id",
            r"candidate/query\.sql: expected exactly one",
        ),
        (
            VALID_YML.replace("maturity: stable", "maturity: beta"),
            VALID_SQL,
            "maturity: 'beta' is not one of",
        ),
        (VALID_YML.replace("version: 1", "version: 0"), VALID_SQL, "version: 0 is less than the minimum"),
        (VALID_YML.replace("created: 2026-11-27", "created: 27/11/2026"), VALID_SQL, "created: '27/11/2026'"),
        (
            VALID_YML.replace("created: 2026-11-27", "created: 2026-27-11"),
            VALID_SQL,
            r"candidate/rule\.yml: invalid YAML value: month must be in 1\.\.12",
        ),
        (
            VALID_YML.replace("updated: 2026-11-30", "updated: 2026-11-01"),
            VALID_SQL,
            "updated 2026-11-01 is before created 2026-11-27",
        ),
        # ATT&CK ids are structured now, not free-text tags
        (
            VALID_YML.replace("  - distillation\n", "  - attack.t1090\n"),
            VALID_SQL,
            r"tags\.0: 'attack\.t1090'",
        ),
        (
            VALID_YML.replace("    - T1090  #", "    - T1090.999  #"),
            VALID_SQL,
            r"T1090\.999 is not in techniques\.json",
        ),
        (
            VALID_YML.replace("    - T1090  #", "    - T1086  #"),
            VALID_SQL,
            "T1086 is not in techniques.json",
        ),  # revoked
        (
            VALID_YML.replace("    - AML.T0008.005", "    - AML.T0024.9"),
            VALID_SQL,
            r"techniques\.atlas\.0: 'AML",
        ),
        (
            VALID_YML[: VALID_YML.index("techniques:")]
            + "techniques: {attack: [], atlas: []}\n"
            + VALID_YML[VALID_YML.index("entity_type:") :],
            VALID_SQL,
            "techniques must name at least one ATT&CK or ATLAS technique",
        ),
    ],
)
def test_lint_rejects_broken_detection(tmp_path, yml, sql, message):
    with pytest.raises(DetectionError, match=message):
        load_detection(write_detection(tmp_path, yml, sql))


def test_lint_line_points_at_the_bad_key(tmp_path):
    broken = VALID_YML.replace("entity_type: ip", "entity_type: host")
    line = broken.splitlines().index("entity_type: host") + 1
    with pytest.raises(DetectionError, match=rf"candidate/rule\.yml:{line}: "):
        load_detection(write_detection(tmp_path, broken))


def test_lint_line_points_at_the_unknown_technique_inside_its_list(tmp_path):
    broken = VALID_YML.replace("    - T1583.003  #", "    - T1583.099  #")
    line = next(number for number, text in enumerate(broken.splitlines(), 1) if "T1583.099" in text)
    with pytest.raises(DetectionError, match=rf"candidate/rule\.yml:{line}: techniques\.attack: T1583\.099"):
        load_detection(write_detection(tmp_path, broken))


def test_every_technique_a_rule_names_is_in_the_bundled_reference_with_its_parent():
    reference = known_techniques()
    for detection in load_detections():
        for framework, ids in detection.techniques.items():
            for technique in ids:
                parent = reference[framework][technique].get("parent")
                assert parent is None or parent in reference[framework], (detection.id, technique)


def test_lint_rejects_sql_without_metadata(tmp_path):
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "query.sql").write_text("select 1 as entity_id")
    with pytest.raises(DetectionError, match=r"lonely: rule folder without its rule\.yml"):
        load_detections(tmp_path)


def test_lint_rejects_missing_sql(tmp_path):
    folder = write_detection(tmp_path, VALID_YML)
    (folder / "query.sql").unlink()
    with pytest.raises(DetectionError, match=r"candidate/rule\.yml: SQL file query\.sql is missing"):
        load_detection(folder)


def test_dedup_key_must_be_a_result_column(tmp_path):
    detection = load_detection(
        write_detection(tmp_path, VALID_YML.replace("  - entity_id\n", "  - source_address\n"))
    )
    con = open_lake(tmp_path / "empty-lake")
    try:
        with pytest.raises(
            DetectionError, match=r"candidate/query\.sql: result lacks column\(s\) \['source_address'\]"
        ):
            run_detection(con, detection, created_at=datetime.now(UTC))
    finally:
        con.close()


def test_lint_rejects_a_negative_weight_naming_its_line(tmp_path):
    # network_crowds drops windows by the sum of their requests' weights: a negative one would hide crowds.
    broken = VALID_YML.replace("  weight_crowd:\n    value: 15", "  weight_crowd:\n    value: -15")
    line = broken.splitlines().index("    value: -15") + 1
    with pytest.raises(
        DetectionError, match=rf"candidate/rule\.yml:{line}: .*-15 is less than the minimum of 0"
    ):
        load_detection(write_detection(tmp_path, broken))
