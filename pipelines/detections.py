"""Detections as code: sql/detections/<name>.sql + <name>.yml, linted on load and run over the lake.

The YAML holds the metadata (severity, runbook, dedup keys, suppression) and every threshold as a
named parameter; the SQL binds them as DuckDB named parameters ($name) and returns one row per alert.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipelines.alerts import (
    REQUIRED_RESULT_COLUMNS,
    SEVERITIES,
    SEVERITY_OVERRIDE_COLUMN,
    build_alert,
    fold_duplicates,
    headline,
)
from pipelines.analyst import ReadOnlyViolation, check_read_only, format_table, open_lake
from pipelines.contracts import ALERT_SCHEMA, load_schema
from pipelines.paths import SQL_DIR

DETECTIONS_DIR = SQL_DIR / "detections"

# key -> (expected Python type(s), what to say when it is wrong)
_METADATA_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "id": (str, "a string equal to the file name"),
    "title": (str, "a non-empty string"),
    "severity": (str, f"one of {', '.join(SEVERITIES)}"),
    "description": (str, "a non-empty string"),
    "runbook": (dict, "a mapping with 'investigate' and 'respond' strings"),
    "false_positives": (list, "a non-empty list of strings"),
    "tags": (list, "a non-empty list of strings"),
    "entity_type": (str, "an entity_type of the alert schema"),
    "dedup_keys": (list, "a non-empty list of result column names"),
    "suppression_minutes": (int, "a positive integer"),
    "enabled": (bool, "true or false"),
    "parameters": (dict, "a mapping of name -> {value, description}"),
}

_SQL_COMMENT = re.compile(r"--[^\n]*")
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")
_SQL_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")


class DetectionError(ValueError):
    """A detection's YAML or SQL is invalid, or its SQL failed; the message names the file."""


@dataclass(frozen=True)
class Detection:
    id: str
    title: str
    severity: str
    description: str
    runbook: dict[str, str]
    false_positives: list[str]
    tags: list[str]
    entity_type: str
    dedup_keys: list[str]
    suppression_minutes: int
    enabled: bool
    parameters: dict[str, dict[str, Any]]
    sql: str
    yml_path: Path
    sql_path: Path

    def parameter_values(self) -> dict[str, Any]:
        return {name: spec["value"] for name, spec in self.parameters.items()}


def _top_level_key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level YAML key, so metadata errors can point at the line."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 1 for key, _ in root.value}


def sql_parameters(sql: str) -> set[str]:
    """Named parameters ($name) used by the SQL, ignoring comments and string literals."""
    return set(_SQL_PARAMETER.findall(_SQL_STRING.sub("''", _SQL_COMMENT.sub("", sql))))


def _metadata_problems(meta: dict[str, Any], stem: str) -> list[tuple[str | None, str]]:
    """(key, problem) pairs; key None means the whole document."""
    problems: list[tuple[str | None, str]] = []
    for key in meta.keys() - _METADATA_KEYS.keys():
        problems.append((key, f"unknown key {key!r}"))
    for key, (expected_type, expectation) in _METADATA_KEYS.items():
        if key not in meta:
            problems.append((None, f"missing key {key!r} ({expectation})"))
            continue
        value = meta[key]
        # bool is an int in Python; `suppression_minutes: true` must not pass as 1.
        wrong_type = not isinstance(value, expected_type) or (
            expected_type is int and isinstance(value, bool)
        )
        if wrong_type or (isinstance(value, str | list | dict) and not value):
            problems.append((key, f"{key!r} must be {expectation}, got {value!r}"))
    if problems:
        return problems
    if meta["id"] != stem:
        problems.append(("id", f"id {meta['id']!r} must equal the file name {stem!r}"))
    if meta["severity"] not in SEVERITIES:
        problems.append(("severity", f"severity {meta['severity']!r} must be one of {', '.join(SEVERITIES)}"))
    entity_types = load_schema(ALERT_SCHEMA)["properties"]["entity_type"]["enum"]
    if meta["entity_type"] not in entity_types:
        problems.append(("entity_type", f"entity_type must be one of {', '.join(entity_types)}"))
    runbook = meta["runbook"]
    if set(runbook) != {"investigate", "respond"} or not all(
        isinstance(text, str) and text.strip() for text in runbook.values()
    ):
        problems.append(
            ("runbook", "runbook must have exactly 'investigate' and 'respond', both non-empty text")
        )
    for key in ("false_positives", "tags", "dedup_keys"):
        if not all(isinstance(item, str) and item for item in meta[key]):
            problems.append((key, f"{key!r} must contain only non-empty strings"))
    if meta["suppression_minutes"] <= 0:
        problems.append(("suppression_minutes", "suppression_minutes must be positive"))
    for name, spec in meta["parameters"].items():
        if not (isinstance(spec, dict) and set(spec) == {"value", "description"}):
            problems.append(
                ("parameters", f"parameter {name!r} must be a mapping of exactly value and description")
            )
        elif not (isinstance(spec["description"], str) and spec["description"].strip()):
            problems.append(("parameters", f"parameter {name!r} needs a description"))
        elif spec["value"] is None:
            problems.append(("parameters", f"parameter {name!r} has no value"))
    return problems


def load_detection(yml_path: Path) -> Detection:
    """Parse and lint one detection; raise DetectionError naming the file (and line) on any problem."""
    text = yml_path.read_text(encoding="utf-8")
    try:
        meta = yaml.safe_load(text)
        key_lines = _top_level_key_lines(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{yml_path}:{mark.line + 1}" if mark else str(yml_path)
        raise DetectionError(f"{where}: invalid YAML: {getattr(error, 'problem', None) or error}") from error
    if not isinstance(meta, dict):
        raise DetectionError(f"{yml_path}:1: a detection must be a YAML mapping")
    problems = _metadata_problems(meta, yml_path.stem)
    if problems:
        key, message = problems[0]
        line = key_lines.get(key, 1) if key else 1
        extra = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DetectionError(f"{yml_path}:{line}: {message}{extra}")

    sql_path = yml_path.with_suffix(".sql")
    if not sql_path.is_file():
        raise DetectionError(f"{yml_path}: SQL file {sql_path.name} is missing")
    sql = sql_path.read_text(encoding="utf-8").strip().rstrip(";")
    try:
        check_read_only(sql)
    except ReadOnlyViolation as error:
        raise DetectionError(f"{sql_path}: {error}") from error
    used, declared = sql_parameters(sql), set(meta["parameters"])
    if used - declared:
        raise DetectionError(
            f"{sql_path}: parameters used but not declared in {yml_path.name}: {sorted(used - declared)}"
        )
    if declared - used:
        line = key_lines.get("parameters", 1)
        raise DetectionError(
            f"{yml_path}:{line}: parameters declared but unused in SQL: {sorted(declared - used)}"
        )
    return Detection(**meta, sql=sql, yml_path=yml_path, sql_path=sql_path)


def load_detections(directory: Path = DETECTIONS_DIR) -> list[Detection]:
    """Every detection in the directory, linted; a .sql without its .yml is an error too."""
    metadata_stems = {path.stem for path in directory.glob("*.yml")}
    orphans = {path.stem for path in directory.glob("*.sql")} - metadata_stems
    if orphans:
        raise DetectionError(f"{directory}: SQL without metadata YAML: {sorted(orphans)}")
    return [load_detection(path) for path in sorted(directory.glob("*.yml"))]


def _select(detections: list[Detection], only: str | Iterable[str] | None) -> list[Detection]:
    if only is None:
        return [detection for detection in detections if detection.enabled]
    wanted = [only] if isinstance(only, str) else list(only)
    known = {detection.id: detection for detection in detections}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise DetectionError(f"unknown detection(s) {unknown}; known: {sorted(known)}")
    # Naming a detection explicitly runs it even when disabled: that is how one tries a new rule.
    return [known[name] for name in wanted]


def run_detection(
    con: duckdb.DuckDBPyConnection, detection: Detection, created_at: dt.datetime
) -> list[dict[str, Any]]:
    try:
        cursor = con.execute(detection.sql, detection.parameter_values())
        columns = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    except duckdb.Error as error:
        raise DetectionError(f"{detection.sql_path}: {error}") from error
    missing = [name for name in (*REQUIRED_RESULT_COLUMNS, *detection.dedup_keys) if name not in columns]
    if missing:
        raise DetectionError(f"{detection.sql_path}: result lacks column(s) {missing}")
    alerts = []
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        override = row.get(SEVERITY_OVERRIDE_COLUMN)
        if override is not None and override not in SEVERITIES:
            raise DetectionError(f"{detection.sql_path}: severity {override!r} is not one of {SEVERITIES}")
        alerts.append(build_alert(detection, row, created_at))
    return fold_duplicates(alerts)


def run_detections(
    con: duckdb.DuckDBPyConnection,
    only: str | Iterable[str] | None = None,
    now: dt.datetime | None = None,
    detections: list[Detection] | None = None,
) -> list[dict[str, Any]]:
    """Run the enabled detections (or those named in `only`) once; return validated alert dicts.

    `now` becomes every alert's created_at (default: the current UTC time).
    """
    created_at = now or dt.datetime.now(dt.UTC)
    selected = _select(detections if detections is not None else load_detections(), only)
    return [alert for detection in selected for alert in run_detection(con, detection, created_at)]


def summarize(selected: list[Detection], alerts: list[dict[str, Any]]) -> str:
    counts = Counter((alert["detection_id"], alert["severity"]) for alert in alerts)
    rows = []
    for detection in selected:
        severities = sorted(
            {severity for detection_id, severity in counts if detection_id == detection.id},
            key=SEVERITIES.index,
            reverse=True,
        )
        rows += [(detection.id, severity, counts[(detection.id, severity)]) for severity in severities]
        if not severities:
            rows.append((detection.id, "-", 0))
    return format_table(["detection", "severity", "alerts"], rows)


def run_detect_command(args: argparse.Namespace) -> int:
    if not Path(args.lake).is_dir():
        print(f"error: lake directory {args.lake} does not exist", file=sys.stderr)
        return 2
    created_at = dt.datetime.now(dt.UTC)
    try:
        selected = _select(load_detections(), args.detection)
        con = open_lake(args.lake, read_only=True)
        try:
            alerts = [alert for detection in selected for alert in run_detection(con, detection, created_at)]
        finally:
            con.close()
    except DetectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as sink:
        for alert in alerts:
            sink.write(json.dumps(alert, sort_keys=True) + "\n")
    print(summarize(selected, alerts))
    for alert in alerts:
        print(headline(alert))
    print(f"{len(alerts)} alert(s) written to {output}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="run the detections over the lake and write alerts as JSONL",
        description="Run every enabled detection under sql/detections once (or only --detection NAME).",
    )
    parser.add_argument("--lake", required=True, help="lake directory")
    parser.add_argument("--output", required=True, help="JSONL file to write, one alert per line")
    parser.add_argument(
        "--detection", action="append", metavar="NAME", help="run only this detection (repeatable)"
    )
    parser.set_defaults(func=run_detect_command)
