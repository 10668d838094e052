"""Detections as code: one folder per rule, sql/detections/<id>/ with query.sql, rule.yml and the rule's
fixtures; linted on load and run over the lake.

The YAML holds the metadata (severity, runbook, dedup keys, suppression, risk) and every threshold as a
named parameter; the SQL binds them as DuckDB named parameters ($name) and returns one row per signal.
`usagewatch detect` hands the signals to the incident engine (pipelines/incidents/engine.py), which records,
correlates, audits and routes; this module never routes by itself. Loading, running and the
incremental loop share the rule model, hence one module (~650 lines, ~140 of them
running two detections at a time over one shared scan).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipelines.exports import indicators
from pipelines.incidents import engine as incidents
from pipelines.incidents.alert_state import AlertStore, state_path
from pipelines.incidents.alerts import (
    REQUIRED_RESULT_COLUMNS,
    RISK_SCORE_COLUMN,
    SEVERITIES,
    SEVERITY_OVERRIDE_COLUMN,
    build_alert,
    fold_duplicates,
)
from pipelines.incidents.audit import open_audit_log
from pipelines.incidents.routing import incident_pages_dir, load_router
from pipelines.incidents.settings import SignalPolicy, incident_settings
from pipelines.infra.config import (
    Config,
    KeyPath,
    load_config,
    load_yaml,
    yaml_error_message,
)
from pipelines.infra.paths import SQL_DIR
from pipelines.infra.rendering import format_table
from pipelines.lake.analyst import ReadOnlyViolation, check_read_only, open_lake
from pipelines.lake.layout import DEAD_LETTERS, TABLES, LakeTable
from pipelines.lake.layout import partitions as lake_partitions
from pipelines.quality import gates as quality
from pipelines.quality.settings import quality_settings
from pipelines.reports.incident_page import write_pages
from pipelines.stream.contracts import (
    DETECTION_SCHEMA,
    TECHNIQUES_REFERENCE,
    known_techniques,
    load_schema,
    schema_errors,
)

logger = logging.getLogger(__name__)

DETECTIONS_DIR = SQL_DIR / "detections"
# One folder per rule, sql/detections/<id>/: these two files and its fixtures (see detect/catalog.py).
RULE_FILE = "rule.yml"
QUERY_FILE = "query.sql"

# The technique ids a rule may name (ATT&CK Enterprise and MITRE ATLAS; where they come from: its "about").

# Relations most detections scan, materialised once per suite run (see shared_scan), in this schema.
SHARED_RELATIONS = ("events_enriched", "ip_network_blocks")
SHARED_SCAN_SCHEMA = "detection_scan"
# Detections run this many at a time, each on its own cursor (run_suite): DuckDB releases the GIL while
# a query runs, and many detections' plans keep one core busy (window functions over few partitions,
# ordered aggregates, small inputs), so a second detection fills the other core of a 2-core machine.
CONCURRENT_DETECTIONS = 2

_SQL_COMMENT = re.compile(r"--[^\n]*")
_SQL_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")
_SQL_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")


class DetectionError(ValueError):
    """A detection's SQL failed on the lake, or returned what no signal can be; the message names the file."""


class RuleError(DetectionError):
    """A rule folder is unusable (its YAML, SQL, fixtures or evidence schema), or a rule named is unknown:
    the catalogue is configuration, so the command stops before it runs anything (exit code 2)."""


@dataclass(frozen=True)
class Detection:
    id: str
    version: int
    maturity: str
    created: str
    updated: str
    title: str
    severity: str
    description: str
    runbook: dict[str, str]
    false_positives: list[str]
    tags: list[str]
    techniques: dict[str, list[str]]
    entity_type: str
    dedup_keys: list[str]
    suppression_minutes: int
    enabled: bool
    parameters: dict[str, dict[str, Any]]
    risk: dict[str, Any]
    sql: str
    yml_path: Path
    sql_path: Path

    def parameter_values(self) -> dict[str, Any]:
        return {name: spec["value"] for name, spec in self.parameters.items()}

    def signal_policy(self) -> SignalPolicy:
        return SignalPolicy(
            self.suppression_minutes, self.risk["max_contribution"], self.risk["links_accounts"]
        )


def _sql_code(sql: str) -> str:
    """The SQL without comments and string literals."""
    return _SQL_STRING.sub("''", _SQL_COMMENT.sub("", sql))


def sql_parameters(sql: str) -> set[str]:
    """Named parameters ($name) used by the SQL, ignoring comments and string literals."""
    return set(_SQL_PARAMETER.findall(_sql_code(sql)))


def _metadata_problems(meta: dict[str, Any], folder_name: str) -> list[tuple[KeyPath, str]]:
    """(path of the offending key, problem) pairs, schema first; the empty path means the whole document."""
    known_keys = load_schema(DETECTION_SCHEMA)["properties"]
    problems: list[tuple[KeyPath, str]] = [
        ((key,), f"unknown key {key!r}") for key in meta if key not in known_keys
    ]
    for path, message in schema_errors(DETECTION_SCHEMA, {k: v for k, v in meta.items() if k in known_keys}):
        location = ".".join(str(part) for part in path)
        problems.append((tuple(path), f"{location}: {message}" if path else message))
    if problems:
        return problems
    if meta["id"] != folder_name:
        problems.append((("id",), f"id {meta['id']!r} must equal the folder name {folder_name!r}"))
    if meta["updated"] < meta["created"]:  # both YYYY-MM-DD, so text order is date order
        problems.append((("updated",), f"updated {meta['updated']} is before created {meta['created']}"))
    techniques = meta["techniques"]
    if not techniques["attack"] and not techniques["atlas"]:
        problems.append((("techniques",), "techniques must name at least one ATT&CK or ATLAS technique"))
    for framework, known in known_techniques().items():
        for index, technique in enumerate(techniques[framework]):
            if technique not in known:
                problems.append(
                    (
                        ("techniques", framework, index),
                        f"techniques.{framework}: {technique} is not in {TECHNIQUES_REFERENCE.name} "
                        "(a revoked or deprecated id, or a typo)",
                    )
                )
    return problems


def _line_of(path: KeyPath, key_lines: dict[KeyPath, int]) -> int:
    """The line of the deepest key on `path` that the YAML has (1 for the document itself)."""
    for length in range(len(path), 0, -1):
        if path[:length] in key_lines:
            return key_lines[path[:length]]
    return 1


def _as_text_dates(meta: dict[str, Any]) -> dict[str, Any]:
    """YAML reads created: 2026-11-27 as a date; the schema and the signals want the text."""
    return {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in meta.items()}


def load_detection(folder: Path) -> Detection:
    """Parse and lint one rule folder; raise RuleError naming the file (and line) on any problem."""
    yml_path, sql_path = folder / RULE_FILE, folder / QUERY_FILE
    if not yml_path.is_file():
        raise RuleError(f"{folder}: rule folder without its {RULE_FILE}")
    text = yml_path.read_text(encoding="utf-8")
    try:
        meta, key_lines = load_yaml(text)  # a key given twice is an error, not "last one wins"
    except yaml.YAMLError as error:
        raise RuleError(yaml_error_message(yml_path, error)) from error
    except ValueError as error:  # a scalar YAML cannot build, e.g. the date 2026-27-11
        raise RuleError(f"{yml_path}: invalid YAML value: {error}") from error
    if not isinstance(meta, dict):
        raise RuleError(f"{yml_path}:1: a detection must be a YAML mapping")
    meta = _as_text_dates(meta)
    problems = _metadata_problems(meta, folder.name)
    if problems:
        path, message = problems[0]
        line = _line_of(path, key_lines)
        extra = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RuleError(f"{yml_path}:{line}: {message}{extra}")

    if not sql_path.is_file():
        raise RuleError(f"{yml_path}: SQL file {QUERY_FILE} is missing")
    sql = sql_path.read_text(encoding="utf-8").strip().rstrip(";")
    try:
        check_read_only(sql)
    except ReadOnlyViolation as error:
        raise RuleError(f"{sql_path}: {error}") from error
    used, declared = sql_parameters(sql), set(meta["parameters"])
    if used - declared:
        raise RuleError(
            f"{sql_path}: parameters used but not declared in {RULE_FILE}: {sorted(used - declared)}"
        )
    if declared - used:
        line = key_lines.get(("parameters",), 1)
        raise RuleError(
            f"{yml_path}:{line}: parameters declared but unused in SQL: {sorted(declared - used)}"
        )
    return Detection(**meta, sql=sql, yml_path=yml_path, sql_path=sql_path)


def rule_folders(directory: Path = DETECTIONS_DIR) -> list[Path]:
    """Every rule folder: each sub-folder is one rule (files beside them are shared fixtures)."""
    return sorted(path for path in directory.iterdir() if path.is_dir())


def load_detections(directory: Path = DETECTIONS_DIR) -> list[Detection]:
    """Every rule folder in the directory, linted; a folder without its rule.yml or query.sql is an error."""
    return [load_detection(folder) for folder in rule_folders(directory)]


def _select(detections: list[Detection], only: str | Iterable[str] | None) -> list[Detection]:
    if only is None:
        return [detection for detection in detections if detection.enabled]
    wanted = [only] if isinstance(only, str) else list(only)
    known = {detection.id: detection for detection in detections}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise RuleError(f"unknown detection(s) {unknown}; known: {sorted(known)}")
    # Naming a detection explicitly runs it even when disabled: that is how one tries a new rule.
    return [known[name] for name in wanted]


def run_detection(
    con: duckdb.DuckDBPyConnection, detection: Detection, created_at: dt.datetime
) -> list[dict[str, Any]]:
    try:
        indicators.install(con)  # peers' indicators: what detect_and_route copied in, else none
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
        risk = row.get(RISK_SCORE_COLUMN)
        if risk is not None and not 0 <= risk <= 100:
            raise DetectionError(f"{detection.sql_path}: risk_score {risk!r} is outside 0-100")
        alerts.append(build_alert(detection, row, created_at))
    return fold_duplicates(alerts)


@contextmanager
def shared_scan(con: duckdb.DuckDBPyConnection, detections: list[Detection]) -> Iterator[None]:
    """While open, each of SHARED_RELATIONS that the detections read is a table, not a view.

    Every detection would otherwise read the lake's Parquet files and join the enrichment again (twelve
    scans of the events per run; on a sink's small files the file count makes each scan slow). The table
    lives in the schema SHARED_SCAN_SCHEMA of the connection's in-memory database, so every cursor of the
    connection can read it (detection_cursor; a temp table is private to one connection), and a temp
    view of the relation's name over it shadows the lake's view for the detections' unchanged SQL. It
    keeps only the columns the detections name (a column named nowhere in their SQL cannot be read by
    them; the raw `extras` JSON alone would double its memory), and is dropped on exit, so the connection
    reads the lake again.
    """
    code = [_sql_code(detection.sql) for detection in detections]
    names = {name.lower() for text in code for name in _SQL_IDENTIFIER.findall(text)}
    database = con.execute("select current_database()").fetchone()[0]
    schema = f"{database}.{SHARED_SCAN_SCHEMA}"
    con.execute(f"create schema {schema}")
    created = []
    try:
        for relation in (name for name in SHARED_RELATIONS if name in names):
            try:
                cursor = con.execute(f"select * from {relation} limit 0")
                columns = [column[0] for column in cursor.description if column[0].lower() in names]
                con.execute(
                    f"create table {schema}.{relation} as "
                    f"select {', '.join(columns)} from {database}.main.{relation}"
                )
            except duckdb.Error as error:
                raise DetectionError(f"reading {relation} for the detections: {error}") from error
            con.execute(f"create temp view {relation} as select * from {schema}.{relation}")
            created.append(relation)
        yield
    finally:
        for relation in created:
            con.execute(f"drop view temp.{relation}")
        con.execute(f"drop schema {schema} cascade")


def detection_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor (a second connection to the same database) that sees the lake as `con` does: temp views
    and tables are private to a connection, so the shared scan's views, a time range's (see
    restrict_to_time_range) and the installed indicators are copied over. Close it after use."""
    cursor = con.cursor()
    try:
        temp_tables = con.execute(
            "select table_name from duckdb_tables() where database_name = 'temp' order by table_oid"
        ).fetchall()
        for (name,) in temp_tables:  # small (indicators): the shared scan's tables are not temp ones
            rows = con.sql(f"select * from temp.{name}").to_arrow_table()
            cursor.register(f"{name}_rows", rows)
            cursor.execute(f"create temp table {name} as select * from {name}_rows")
            cursor.unregister(f"{name}_rows")
        # a view may read a temp table, so views come after the tables, in the order they were made
        temp_views = con.execute(
            "select sql from duckdb_views() where database_name = 'temp' order by view_oid"
        ).fetchall()
        for (sql,) in temp_views:
            cursor.execute(sql)
    except BaseException:
        cursor.close()
        raise
    return cursor


def run_suite(
    con: duckdb.DuckDBPyConnection, selected: list[Detection], created_at: dt.datetime
) -> list[dict[str, Any]]:
    """The detections over one shared scan, CONCURRENT_DETECTIONS at a time, each on its own cursor.

    The signals come in the order of `selected` (each detection's in its query's order) whatever order
    the detections finish in, and a failure raises the error of the first failing detection in that
    order, naming its file, as a run one after the other would.
    """
    with shared_scan(con, selected):
        if len(selected) < 2:
            return [signal for detection in selected for signal in run_detection(con, detection, created_at)]
        results: list[list[dict[str, Any]] | None] = [None] * len(selected)
        errors: dict[int, BaseException] = {}
        queue = iter(range(len(selected)))
        lock = threading.Lock()

        def work(cursor: duckdb.DuckDBPyConnection) -> None:
            # Detections are taken in catalogue order, so every one before a failure has been taken and
            # finishes: the smallest failing index is the one a sequential run would have stopped at.
            try:
                while not errors:
                    with lock:
                        index = next(queue, None)
                    if index is None:
                        return
                    try:
                        results[index] = run_detection(cursor, selected[index], created_at)
                    except BaseException as error:  # noqa: BLE001 (re-raised by the caller, in order)
                        errors[index] = error
            finally:
                cursor.close()

        cursors: list[duckdb.DuckDBPyConnection] = []
        try:
            for _ in range(min(CONCURRENT_DETECTIONS, len(selected))):
                cursors.append(detection_cursor(con))
        except BaseException:
            for cursor in cursors:
                cursor.close()
            raise
        workers = [threading.Thread(target=work, args=(cursor,), name="detection") for cursor in cursors]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[min(errors)]
        return [signal for signals in results for signal in signals or []]


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
    return run_suite(con, selected, created_at)


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
    return format_table(["detection", "severity", "signals"], rows)


# --- time ranges: `detect --since/--until` and the incremental loop's look-back ---------------------


def _time_column(table: LakeTable) -> str:
    return "window_start" if any(name == "window_start" for name, _ in table.columns) else "event_time"


def restrict_to_time_range(
    con: duckdb.DuckDBPyConnection, since: dt.datetime | None, until: dt.datetime | None
) -> None:
    """Shadow every lake view with a temp view keeping rows in [since, until) of its time column.

    Detections then see only that range without any change to their SQL. The dt predicate lets DuckDB
    skip whole hive partitions; dead letters are partitioned by processing time, so they get none.
    """
    if since is None and until is None:
        return
    database = con.execute("select current_database()").fetchone()[0]
    for table in TABLES:
        column = _time_column(table)
        conditions = []
        for bound, operator, partition_operator in ((since, ">=", ">="), (until, "<", "<=")):
            if bound is None:
                continue
            naive = bound.astimezone(dt.UTC).replace(tzinfo=None)
            conditions.append(f"{column} {operator} timestamp '{naive.isoformat(sep=' ')}'")
            if table is not DEAD_LETTERS:
                conditions.append(f"dt {partition_operator} '{naive:%Y-%m-%d}'")
        con.execute(
            f"create or replace temp view {table.name} as select * from {database}.main.{table.name} "
            f"where {' and '.join(conditions)}"
        )


# --- detect, then hand the signals to the incident engine -----------------------------------------


@dataclass
class DetectRun:
    selected: list[Detection]
    signals: list[dict[str, Any]]  # every signal this run detected (new or not)
    engine: incidents.EngineRun  # what the state, incidents and routing made of them
    degraded: str | None = None  # why the data under this run is not known to be sound, if it is not

    @property
    def changes(self) -> list[dict[str, Any]]:
        """Incidents opened or changed by this run, as routed (documents with `change`)."""
        return self.engine.changes

    def describe(self) -> str:
        return self.engine.describe() + (
            f"\n{self.degraded}" if self.degraded else "\ndata quality: every partition passed"
        )


def detect_and_route(
    lake_dir: str | Path,
    config: Config | None = None,
    *,
    state: str | Path | None = None,
    only: str | Iterable[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    now: dt.datetime | None = None,
    detections: list[Detection] | None = None,
    incident_pages: bool = True,
) -> DetectRun:
    """Run the detections once and hand their signals to the incident engine, then deliver the outbox.

    The engine records every signal and incident change in one audited pass (incidents.raise_signals);
    the pages of the incidents it changed are written next (`incident_pages`; notifications link them)
    and delivery comes last, a separate step by nature: a sink's answer is per notification and late,
    and whatever a sink does not take stays in the outbox for a later run.

    Raises ConfigError / RoutingError (bad routing, missing secret) before any detection runs,
    DetectionError, AlertStateError. `now` is the signals' created_at and the state's clock.
    """
    config = config or load_config()
    router = load_router(config)
    settings = incident_settings(config)
    now = now or dt.datetime.now(dt.UTC)
    selected = _select(detections if detections is not None else load_detections(), only)
    con = open_lake(lake_dir, read_only=True)
    try:
        restrict_to_time_range(con, since, until)
        indicators.install(con, indicators.load_from_state(state_path(config, state)))
        signals = run_suite(con, selected, now)
        # Data quality of the partitions under this run: read before the store is opened for writing.
        health = quality.partition_health(state_path(config, state), lake_dir, since, until)
        signals = quality.mark_degraded(signals, health)
        with AlertStore.open(state_path(config, state)) as store:
            engine = incidents.raise_signals(
                store,
                router,
                open_audit_log(config, state),
                signals,
                {detection.id: detection.signal_policy() for detection in selected},
                settings,
                now,
                incidents.lake_output_tokens(con),
                incidents.lake_account_links(con),
            )
            if incident_pages:
                _write_incident_pages(config, store, engine, con)
            engine.delivery = router.deliver(store, now)
    finally:
        con.close()
    return DetectRun(selected, signals, engine, quality.degraded_note(health))


def _write_incident_pages(config: Config, store: AlertStore, engine: incidents.EngineRun, con) -> None:
    """The pages of the incidents this run changed, written before their notifications go out, so that the
    link in them opens the page as it is now."""
    changed = sorted({change["incident_id"] for change in engine.changes})
    directory = incident_pages_dir(quality_settings(config).reports_dir)
    try:
        write_pages(store, changed, directory, con)
    except Exception as error:  # noqa: BLE001 (a page is a convenience: never worth a lost page to on-call)
        logger.warning(f"incident pages not written to {directory}: {error}")


# --- incremental: `detect --every` ----------------------------------------------------------------


@dataclass
class LakeScan:
    new_files: dict[str, int]  # lake-relative path -> size, for part files not processed at that size
    completed_partitions: list[str]  # lake-relative partition dirs with Flink's _SUCCESS marker
    earliest_partition: dt.datetime | None  # start hour of the oldest partition with new files


def scan_lake(lake_dir: Path, store: AlertStore) -> LakeScan:
    """New committed part files since the last run; complete partitions are not listed again."""
    processed, done = store.processed_files(), store.completed_partitions()
    new_files: dict[str, int] = {}
    completed: list[str] = []
    earliest = None
    # Dead letters alone trigger no detection; they are partitioned by processing time anyway.
    for table in (table for table in TABLES if table is not DEAD_LETTERS):
        for partition in lake_partitions(table, lake_dir):
            key = str(partition.path.relative_to(lake_dir))
            if key in done:
                continue
            # Checked before listing: Flink writes _SUCCESS after the partition's last file, so a
            # listing taken after seeing the marker is complete.
            committed = partition.closed
            files = {
                str(path.relative_to(lake_dir)): path.stat().st_size for path in partition.committed_files()
            }
            fresh = {path: size for path, size in files.items() if processed.get(path) != size}
            if fresh:
                new_files.update(fresh)
                start = partition.start.replace(tzinfo=dt.UTC)
                earliest = start if earliest is None else min(earliest, start)
            if committed:
                completed.append(key)
    return LakeScan(new_files, completed, earliest)


def run_incrementally(
    lake_dir: Path,
    config: Config,
    every: dt.timedelta,
    lookback: dt.timedelta,
    stop: threading.Event,
    *,
    state: str | None = None,
    only: Iterable[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    output: Path | None = None,
    signals_output: Path | None = None,
) -> int:
    """Each cycle: find newly committed lake files; if any, detect over their hours (minus `lookback`,
    so windows reaching back are complete), then mark them processed; otherwise only retry the outbox.
    Returns the number of cycles run; stops when `stop` is set (checked between cycles).
    """
    path = state_path(config, state)
    router = load_router(config)
    cycles = 0
    while not stop.is_set():
        now = dt.datetime.now(dt.UTC)
        with AlertStore.open(path) as store:
            scan = scan_lake(lake_dir, store)
            if not scan.new_files:
                store.mark_processed({}, scan.completed_partitions, now)
                delivery = router.deliver(store, now)  # sinks that were down get their backlog
                if delivery.delivered or delivery.failed:
                    logger.info(
                        f"no new lake files; outbox: {delivery.describe()}",
                        extra={"fields": {"cycle": cycles, "new_files": 0, "delivered": delivery.delivered,
                                          "failed": delivery.failed}},
                    )  # fmt: skip
        if scan.new_files:
            start = scan.earliest_partition - lookback
            run = detect_and_route(
                lake_dir,
                config,
                state=path,
                only=only,
                since=max(filter(None, (since, start))),
                until=until,
                now=now,
            )
            with AlertStore.open(path) as store:
                store.mark_processed(scan.new_files, scan.completed_partitions, now)
            if signals_output is not None:
                with signals_output.open("a", encoding="utf-8") as sink:
                    for signal in run.engine.recorded.new + [s for s, _ in run.engine.recorded.suppressed]:
                        sink.write(json.dumps(signal, sort_keys=True) + "\n")
            if output is not None and run.changes:
                with output.open("a", encoding="utf-8") as sink:
                    for change in run.changes:
                        sink.write(json.dumps(change, sort_keys=True) + "\n")
            logger.info(
                f"{len(scan.new_files)} new lake file(s); {run.describe()}",
                extra={"fields": {"cycle": cycles, "new_files": len(scan.new_files),
                                  "signals": len(run.signals), "incident_changes": len(run.changes),
                                  "pages": len(run.engine.pages)}},
            )  # fmt: skip
            for page in run.engine.pages:
                page_fields = {"incident_id": page["incident_id"], "severity": page["severity"]}
                logger.info(incidents.page_line(page), extra={"fields": page_fields})
        cycles += 1
        stop.wait(every.total_seconds())
    return cycles
