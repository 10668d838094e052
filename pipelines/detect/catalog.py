"""The detection catalogue as code: list, lint and test every rule folder (`usagewatch detections`).

A rule folder sql/detections/<id>/ holds
  query.sql             the SQL, thresholds bound as $name from rule.yml
  rule.yml              its metadata (schemas/detection.schema.json)
  evidence.schema.json  the JSON Schema of its signals' `evidence` (one key, one type, in every rule)
  positive*.jsonl       access events it must catch (positive.jsonl and positive-<case>.jsonl)
  negative*.jsonl       benign look-alikes it must stay quiet on; without negative.jsonl, the
                        negative-<case>.jsonl files run on top of the shared benign population
                        (sql/detections/benign_traps.jsonl, every false-positive trap of the generator)
  expected.yml          exactly the signals each kind yields: {positive: [{entity_id, severity}], negative}
  indicators.stix.json  optional: a peer's STIX 2.1 bundle installed before the run, as `usagewatch
                        indicators import` would (shared_indicator_match)

A fixture run builds a real lake from the events (pipelines.lake.batch_lake, the job's own aggregates), runs
the one rule over it as `usagewatch detect` does, and compares. The pytest suite and the command run the
same functions.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from pipelines.detect.detections import (
    DETECTIONS_DIR,
    Detection,
    DetectionError,
    RuleError,
    load_detection,
    rule_folders,
    run_detection,
)
from pipelines.exports import indicators
from pipelines.exports.stix import read_bundle
from pipelines.incidents.alerts import (
    IMMEDIATE_COLUMN,
    REQUIRED_RESULT_COLUMNS,
    RISK_SCORE_COLUMN,
    SEVERITY_OVERRIDE_COLUMN,
)
from pipelines.lake.analyst import open_lake
from pipelines.lake.batch_lake import build_lake

FIXTURE_KINDS = ("positive", "negative")
BENIGN_TRAPS_FILE = "benign_traps.jsonl"
EVIDENCE_SCHEMA_FILE = "evidence.schema.json"
EXPECTED_FILE = "expected.yml"
INDICATORS_FILE = "indicators.stix.json"
# created_at of fixture signals: fixed, so a fixture run is the same on every day
FIXTURE_NOW = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
# Result columns that are the signal's own fields, not evidence (pipelines.alerts.build_alert).
NOT_EVIDENCE = {*REQUIRED_RESULT_COLUMNS, SEVERITY_OVERRIDE_COLUMN, RISK_SCORE_COLUMN, IMMEDIATE_COLUMN}
# A negative may carry context (a building block's crowd), never evidence that pages: below this risk,
# severity info or low.
NEGATIVE_MAX_RISK = 40
NEGATIVE_SEVERITIES = ("info", "low")


def fixture_files(folder: Path, kind: str) -> list[Path]:
    """<kind>.jsonl (negatives default to the shared benign traps) plus every <kind>-<case>.jsonl."""
    main = folder / f"{kind}.jsonl"
    if not main.exists() and kind == "negative":
        # beside the rule folders; a catalogue elsewhere (a rule in development) borrows the shipped one
        shared = folder.parent / BENIGN_TRAPS_FILE
        main = shared if shared.exists() else DETECTIONS_DIR / BENIGN_TRAPS_FILE
    cases = sorted(folder.glob(f"{kind}-*.jsonl"))
    return ([main] if main.exists() else []) + cases


def expected_signals(folder: Path, kind: str) -> list[tuple[str, str]]:
    """(entity_id, severity) pairs of expected.yml for this kind, sorted."""
    path = folder / EXPECTED_FILE
    try:
        expected = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise RuleError(f"{path}: {error}") from error
    items = expected.get(kind)
    if not isinstance(items, list):
        raise RuleError(f"{path}: '{kind}' must be a list of {{entity_id, severity}}")
    return sorted((str(item["entity_id"]), item["severity"]) for item in items)


def evidence_validator(folder: Path) -> Draft202012Validator:
    path = folder / EVIDENCE_SCHEMA_FILE
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except OSError as error:
        raise RuleError(f"{path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise RuleError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from error
    except SchemaError as error:
        raise RuleError(f"{path}: not a JSON Schema: {error.message}") from error
    return Draft202012Validator(schema)


def evidence_problems(validator: Draft202012Validator, signal: dict[str, Any]) -> list[str]:
    return [
        f"{signal['entity_id']}: evidence/{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(signal["evidence"])
    ]


def lake_signals(detection: Detection, events_files: list[Path], work_dir: Path) -> list[dict[str, Any]]:
    """The signals of one detection over a lake built from these JSONL files (in work_dir)."""
    events = work_dir / "events.jsonl"
    with events.open("wb") as sink:
        for path in events_files:
            sink.write(path.read_bytes().rstrip(b"\n") + b"\n")
    report = build_lake(events, work_dir / "lake")
    if report.dead_letters:
        raise RuleError(
            f"{detection.id}: {report.dead_letters} fixture record(s) break the event contract: "
            f"fixtures are real access events ({', '.join(path.name for path in events_files)})"
        )
    con = open_lake(work_dir / "lake")
    bundle = detection.yml_path.parent / INDICATORS_FILE
    try:
        if bundle.exists():
            indicators.install(con, read_bundle(bundle).indicators)
        return run_detection(con, detection, FIXTURE_NOW)
    finally:
        con.close()


@dataclass
class FixtureResult:
    detection_id: str
    kind: str
    files: list[str]
    expected: list[tuple[str, str]]
    found: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        files = ", ".join(self.files)
        head = f"{self.detection_id} {self.kind}: {verdict} ({len(self.found)} signal(s); {files})"
        return "\n".join([head, *(f"  {problem}" for problem in self.problems)])


def run_fixture(detection: Detection, kind: str) -> FixtureResult:
    """Run one rule on its positive or negative fixtures and judge the signals."""
    folder = detection.yml_path.parent
    files = fixture_files(folder, kind)
    result = FixtureResult(detection.id, kind, [path.name for path in files], expected_signals(folder, kind))
    if not files:
        result.problems.append(f"no {kind} fixture ({kind}.jsonl or {kind}-<case>.jsonl)")
        return result
    validator = evidence_validator(folder)
    with tempfile.TemporaryDirectory(prefix=f"usagewatch-fixture-{detection.id}-") as work:
        signals = lake_signals(detection, files, Path(work))
    result.found = sorted((signal["entity_id"], signal["severity"]) for signal in signals)
    if result.found != result.expected:
        missing = sorted(set(result.expected) - set(result.found))
        unexpected = sorted(set(result.found) - set(result.expected))
        result.problems.append(f"expected.yml differs: missing {missing}, unexpected {unexpected}")
    if kind == "positive" and not signals:
        result.problems.append("a positive fixture that yields nothing tests nothing")
    if kind == "negative":
        result.problems += [
            f"{signal['entity_id']}: a negative may only carry context (risk < {NEGATIVE_MAX_RISK}, "
            f"{' or '.join(NEGATIVE_SEVERITIES)}), got risk {signal['risk_score']}, {signal['severity']}"
            for signal in signals
            if signal["risk_score"] >= NEGATIVE_MAX_RISK or signal["severity"] not in NEGATIVE_SEVERITIES
        ]
    for signal in signals:
        result.problems += evidence_problems(validator, signal)
    return result


def check_fixtures(detection: Detection) -> list[FixtureResult]:
    """Both kinds of fixture of one rule (named so that pytest never takes it for a test)."""
    return [run_fixture(detection, kind) for kind in FIXTURE_KINDS]


def lint_folder(folder: Path, con: duckdb.DuckDBPyConnection) -> tuple[Detection | None, list[str]]:
    """rule.yml against its schema, the SQL parsed and bound on an empty lake, the evidence schema against
    the SQL's result columns, the fixtures present. (detection or None, problems)."""
    try:
        detection = load_detection(folder)
    except DetectionError as error:
        return None, [str(error)]
    problems = []
    try:
        # Binding on the empty lake finds unknown tables, columns and functions, not only syntax errors.
        columns = [
            column[0] for column in con.execute(detection.sql, detection.parameter_values()).description
        ]
    except duckdb.Error as error:
        return detection, [f"{detection.sql_path}: {error}"]
    try:
        schema = evidence_validator(folder).schema
    except DetectionError as error:
        problems.append(str(error))
    else:
        evidence = [name for name in columns if name not in NOT_EVIDENCE]
        documented = list(schema.get("properties", {}))
        if sorted(evidence) != sorted(documented):
            problems.append(
                f"{folder / EVIDENCE_SCHEMA_FILE}: properties differ from the SQL's evidence columns: "
                f"undocumented {sorted(set(evidence) - set(documented))}, "
                f"not returned {sorted(set(documented) - set(evidence))}"
            )
    for kind in FIXTURE_KINDS:
        if not fixture_files(folder, kind):
            problems.append(f"{folder}: no {kind} fixture ({kind}.jsonl or {kind}-<case>.jsonl)")
    if not any(folder.glob("negative*.jsonl")):
        problems.append(
            f"{folder}: no negative fixture of its own (a benign look-alike it must stay quiet on)"
        )
    try:
        for kind in FIXTURE_KINDS:
            expected_signals(folder, kind)
    except (DetectionError, KeyError, TypeError) as error:
        problems.append(f"{folder / EXPECTED_FILE}: {error}")
    return detection, problems


def _typed_paths(schema: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Key path -> JSON type of every property, nested ones too. Null is left out: a key may be null in
    one detection (no input tokens to divide by) and never in another."""
    found = {}
    for name, spec in schema.get("properties", {}).items():
        kinds = spec.get("type", "time" if "$ref" in spec or "anyOf" in spec else "any")
        kinds = [kinds] if isinstance(kinds, str) else kinds
        items = spec.get("items", {}).get("type")
        found[(*path, name)] = "/".join(kind for kind in kinds if kind != "null") + (
            f"<{items}>" if items else ""
        )
        found.update(_typed_paths(spec, (*path, name)))
    return found


def evidence_types(folders: list[Path]) -> dict[tuple[str, ...], dict[str, str]]:
    """Evidence key path -> {rule id: its JSON type}, over the rules' evidence schemas."""
    types: dict[tuple[str, ...], dict[str, str]] = {}
    for folder in folders:
        for path, kind in _typed_paths(evidence_validator(folder).schema).items():
            types.setdefault(path, {})[folder.name] = kind
    return types


def evidence_type_clashes(folders: list[Path]) -> list[str]:
    """One line per evidence key that has different types in different rules."""
    return [
        f"evidence key {'.'.join(path)} has different types: {kinds}"
        for path, kinds in evidence_types(folders).items()
        if len(set(kinds.values())) > 1
    ]


def lint_catalogue(directory: Path = DETECTIONS_DIR) -> dict[str, list[str]]:
    """Rule id (or "catalogue" for problems across rules) -> its problems (empty when clean); every
    folder is checked even when one fails."""
    with tempfile.TemporaryDirectory(prefix="usagewatch-lint-") as empty_lake:
        con = open_lake(empty_lake)
        indicators.install(con)  # the (empty) peers' indicators a detection run has too
        try:
            problems = {folder.name: lint_folder(folder, con)[1] for folder in rule_folders(directory)}
        finally:
            con.close()
    with_schema = [
        folder
        for folder in rule_folders(directory)
        if not any(EVIDENCE_SCHEMA_FILE in problem for problem in problems[folder.name])
    ]
    problems["catalogue"] = evidence_type_clashes(with_schema)
    return problems


def run_catalogue_tests(
    only: list[str] | None = None, directory: Path = DETECTIONS_DIR
) -> tuple[list[FixtureResult], list[str]]:
    """(fixture results, rules that failed to load) for every rule or those named in `only`."""
    folders = {folder.name: folder for folder in rule_folders(directory)}
    unknown = sorted(set(only or ()) - set(folders))
    if unknown:
        raise RuleError(f"unknown detection(s) {unknown}; known: {sorted(folders)}")
    results, broken = [], []
    for name in only or sorted(folders):
        try:
            detection = load_detection(folders[name])
        except DetectionError as error:
            broken.append(str(error))
            continue
        results += check_fixtures(detection)
    return results, broken


def catalogue_rows(detections: list[Detection]) -> list[tuple[str, ...]]:
    """One row per rule for `detections list`."""
    return [
        (
            detection.id,
            detection.severity,
            detection.maturity,
            f"v{detection.version}",
            "yes" if detection.enabled else "no",
            " ".join([*detection.techniques["attack"], *detection.techniques["atlas"]]),
        )
        for detection in detections
    ]
