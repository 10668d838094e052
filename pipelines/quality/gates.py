"""Data-quality gates: Great Expectations suites over each committed lake partition; `usagewatch validate`.

Suites (pipelines/quality/suites.py) name the lake table they guard and the SQL file that turns one
partition into the batch GX checks: DuckDB reads the partition and derives columns (window alignment, clock
skew, per-minute reconciliation), GX evaluates the expectations and writes its own result JSON.

Every result is stored in the state database (table quality_results) with a fingerprint of the
partition's files, so later readers can tell a partition that passed from one that failed, was never
validated, or gained files since it was validated (both "unvalidated"). Detections and reports ask
`partition_health`; a failed suite also raises a data-quality signal, which the incident engine
(pipelines/incidents/engine.py) turns into an incident at once.

One module (~590 lines): validation, stored results, partition health and data-quality signals are
one chain over the same partition records (the suites live in suites.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines.incidents import engine as incidents
from pipelines.incidents.alert_state import AlertStore, open_state_read_only
from pipelines.incidents.alerts import alert_id, dedup_key
from pipelines.incidents.audit import open_audit_log
from pipelines.incidents.routing import load_router
from pipelines.incidents.settings import SignalPolicy, incident_settings
from pipelines.infra.clock import naive_utc
from pipelines.infra.config import Config
from pipelines.lake.analyst import open_lake
from pipelines.lake.layout import (
    COMMITTED_FILE_GLOB,
    TABLES,
    LakeTable,
    PartitionHour,
    TableFiles,
    scan_files,
    sql_string_literal,
)
from pipelines.lake.layout import partitions as lake_partitions
from pipelines.quality.suites import PLACEHOLDER, QualityError, Suite, column_of, gated_tables, load_suites
from pipelines.stream.contracts import format_event_time, validate_alert

DATA_QUALITY_DETECTION = "data_quality"
# One alert per failing suite and partition hour: re-validating the same hour keeps the same alert id.
DATA_QUALITY_SUPPRESSION_MINUTES = 60
DATA_QUALITY_RUNBOOK = (
    "Investigate: open the Great Expectations result JSON named in the evidence and query the partition "
    "with `usagewatch sql` (where dt = ... and hr = ...) to see the failing rows; check the producer and "
    "the GeoIP enrichment for the hour. Respond: fix or replay the partition, then re-run `usagewatch "
    "validate --date DT`; until it passes, treat detections over that hour as degraded."
)

STATUSES = ("passed", "failed", "unvalidated")

# Not a GX suite: validate's own check that every committed file of a partition is readable Parquet
# inside the lake. Readers skip such files (lake.scan_files), so without this finding they would vanish.
READABLE_FILES_SUITE = "parquet_files_readable"
READABLE_FILES_WHY = (
    "a corrupt, truncated, foreign or symlinked file is skipped by every reader: its rows are missing "
    "from detections and reports until it is replaced or removed"
)

_SQL_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")

_SCHEMA = """
create table if not exists quality_results (
    validated_at timestamp not null,
    table_name varchar not null,
    dt varchar not null,
    hr varchar not null,
    suite varchar not null,
    success boolean not null,
    evaluated integer not null,
    unsuccessful integer not null,
    failing json not null,         -- [{expectation, column, why, observed}] of the failed expectations
    fingerprint varchar not null,  -- of the partition's committed files when validated
    result_path varchar not null,  -- Great Expectations' own result JSON
    primary key (table_name, dt, hr, suite, validated_at)
);
"""


# --- partitions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition(PartitionHour):
    table: LakeTable
    dt: str
    hr: str
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.table.name} dt={self.dt} hr={self.hr}"

    def files(self) -> list[Path]:
        return sorted(self.folder.glob(COMMITTED_FILE_GLOB))

    def scan(self) -> TableFiles:
        """The partition's committed files: readable Parquet, and the ones readers skip."""
        return scan_files(self.folder.parent.parent, self.files())  # folder: <table>/dt=../hr=..

    def fingerprint(self) -> str:
        """Changes whenever a committed file is added, removed or rewritten."""
        digest = hashlib.sha256()
        for path in self.files():
            stat = path.lstat()  # a symlink planted as a part file may dangle
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def committed_partitions(
    lake_dir: str | Path, tables: Iterable[LakeTable], date: str | None = None
) -> list[Partition]:
    """Partitions holding at least one committed file, ordered by time then table."""
    found = [
        Partition(table, folder.dt, folder.hr, folder.path)
        for table in tables
        for folder in lake_partitions(table, lake_dir, date)
        if folder.committed_files()
    ]
    table_order = {table.name: index for index, table in enumerate(TABLES)}
    return sorted(found, key=lambda p: (p.dt, p.hr, table_order[p.table.name]))


def render_batch_sql(suite: Suite, partition: Partition, lake_dir: Path) -> str:
    """The suite's batch SQL with its placeholders bound to `partition`'s hour (readable files only)."""

    def expand(match: re.Match[str]) -> str:
        kind, table_name = match.groups()
        table = next(table for table in TABLES if table.name == table_name)
        if kind == "partition":
            # Over the typed lake view: every lake.py column exists; DuckDB prunes to this hour's files.
            return (
                f"(select * from {table.name} where dt = {sql_string_literal(partition.dt)} "
                f"and hr = {sql_string_literal(partition.hr)})"
            )
        folder = table.path(lake_dir) / f"dt={partition.dt}" / f"hr={partition.hr}"
        readable = scan_files(table.path(lake_dir), sorted(folder.glob(COMMITTED_FILE_GLOB))).readable
        files = "[" + ", ".join(sql_string_literal(str(path)) for path in readable) + "]"
        options = "union_by_name = true, hive_partitioning = false"
        return f"read_parquet({files}, {options})"

    return PLACEHOLDER.sub(expand, suite.batch_sql)


# --- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedExpectation:
    expectation: str
    column: str | None
    why: str
    observed: Any

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    def to_json(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "why": self.why,
            "observed": self.observed,
        }


@dataclass(frozen=True)
class SuiteResult:
    suite: Suite
    partition: Partition
    success: bool
    evaluated: int
    failing: list[FailedExpectation]
    fingerprint: str
    result_path: Path
    validated_at: dt.datetime


def _observed(result: dict[str, Any]) -> Any:
    """The short, human-sized part of a GX expectation result."""
    details = result.get("result") or {}
    if "observed_value" in details:
        return details["observed_value"]
    keys = ("element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list")
    return {key: details[key] for key in keys if key in details}


def _json_safe(value: Any) -> Any:
    # GX results hold numpy scalars and timestamps; the result files must stay plain JSON.
    return json.loads(json.dumps(value, default=str))


class _Validator:
    """One ephemeral Great Expectations context (imported lazily: the import alone takes seconds)."""

    def __init__(self, suites: list[Suite]):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.core.expectation_suite import ExpectationSuite
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        # GX's own per-metric progress bars would drown the one-line-per-partition progress.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self.context.data_sources.add_pandas("usagewatch_lake").add_dataframe_asset("partition")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("one_partition")
        self.suites = {}
        for suite in suites:
            try:
                self.suites[suite.name] = self.context.suites.add(ExpectationSuite(**suite.definition))
            except Exception as error:  # GX raises many types for a malformed suite; name the file
                raise QualityError(f"{suite.path}: not a valid Great Expectations suite: {error}") from error

    def validate(self, suite: Suite, frame) -> dict[str, Any]:
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        return _json_safe(batch.validate(self.suites[suite.name]).to_json_dict())


def _batch_parameters(sql: str, partition: Partition, validated_at: dt.datetime) -> dict[str, Any]:
    available = {
        "validated_at": validated_at.replace(tzinfo=None),
        "partition_start": partition.start,
        "partition_end": partition.end,
    }
    used = set(_SQL_PARAMETER.findall(sql))
    unknown = used - available.keys()
    if unknown:
        raise QualityError(
            f"batch SQL uses unknown parameter(s) {sorted(unknown)} (known: {sorted(available)})"
        )
    # DuckDB rejects parameters a statement does not use.
    return {name: value for name, value in available.items() if name in used}


def result_file(results_dir: Path, suite: Suite, partition: Partition) -> Path:
    return (
        results_dir
        / partition.table.name
        / f"dt={partition.dt}"
        / f"hr={partition.hr}"
        / f"{suite.name}.json"
    )


def _readable_files_suite(table: LakeTable) -> Suite:
    return Suite(
        name=READABLE_FILES_SUITE,
        table=table,
        batch_sql="",
        alert_severity="high",
        description="Every committed file of the partition is readable Parquet inside the lake.",
        definition={"name": READABLE_FILES_SUITE, "expectations": []},
        path=Path(__file__),
    )


def _readable_files_result(
    partition: Partition, files: TableFiles, results_dir: Path, fingerprint: str, validated_at: dt.datetime
) -> SuiteResult:
    """A failed finding naming each unreadable file, with a result JSON like a GX suite's."""
    suite = _readable_files_suite(partition.table)
    failing = [
        FailedExpectation("expect_file_to_be_readable_parquet", bad.path.name, READABLE_FILES_WHY, str(bad))
        for bad in files.unreadable
    ]
    path = result_file(results_dir, suite, partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    outcome = {
        "success": False,
        "results": [item.to_json() for item in failing],
        "readable": len(files.readable),
    }
    path.write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return SuiteResult(suite, partition, False, len(failing), failing, fingerprint, path, validated_at)


def validate_partitions(
    lake_dir: str | Path,
    results_dir: Path,
    partitions: list[Partition],
    suites: list[Suite],
    now: dt.datetime | None = None,
    progress=None,
) -> list[SuiteResult]:
    """Run every suite of each partition's table; write GX's result JSON; return the results."""
    lake_dir = Path(lake_dir).resolve()
    validated_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    validator = _Validator(suites)
    con = open_lake(lake_dir, read_only=True)
    results = []
    try:
        for index, partition in enumerate(partitions, start=1):
            fingerprint = partition.fingerprint()
            files = partition.scan()
            if files.unreadable:
                results.append(
                    _readable_files_result(partition, files, results_dir, fingerprint, validated_at)
                )
            # With no readable file left there is nothing for the suites to check.
            table_suites = [suite for suite in suites if suite.table == partition.table and files.readable]
            for suite in table_suites:
                sql = render_batch_sql(suite, partition, lake_dir)
                try:
                    frame = con.execute(sql, _batch_parameters(sql, partition, validated_at)).df()
                except (duckdb.Error, QualityError) as error:
                    raise QualityError(
                        f"{suite.path.with_suffix('.sql')} on {partition.label}: {error}"
                    ) from error
                outcome = validator.validate(suite, frame)
                path = result_file(results_dir, suite, partition)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n", encoding="utf-8")
                failing = [
                    FailedExpectation(
                        expectation=item["expectation_config"]["type"],
                        column=column_of(item["expectation_config"]["kwargs"]),
                        why=suite.why(
                            item["expectation_config"]["type"], item["expectation_config"]["kwargs"]
                        ),
                        observed=_observed(item),
                    )
                    for item in outcome["results"]
                    if not item["success"]
                ]
                evaluated = outcome["statistics"]["evaluated_expectations"]
                results.append(
                    SuiteResult(
                        suite,
                        partition,
                        outcome["success"],
                        evaluated,
                        failing,
                        fingerprint,
                        path,
                        validated_at,
                    )
                )
            if progress:
                failed = [r.suite.name for r in results if r.partition == partition and not r.success]
                progress(
                    index,
                    len(partitions),
                    f"{partition.label}: " + (f"FAILED {', '.join(failed)}" if failed else "passed"),
                )
    finally:
        con.close()
    return results


# --- state database --------------------------------------------------------------------------------


def store_results(con: duckdb.DuckDBPyConnection, results: list[SuiteResult]) -> None:
    con.execute(_SCHEMA)
    con.executemany(
        "insert or replace into quality_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [naive_utc(r.validated_at), r.partition.table.name, r.partition.dt, r.partition.hr, r.suite.name,
             r.success, r.evaluated, len(r.failing), json.dumps([f.to_json() for f in r.failing]),
             r.fingerprint, str(r.result_path)]
            for r in results
        ],
    )  # fmt: skip


def _latest_results(state_path: Path) -> dict[tuple[str, str, str, str], tuple[bool, str, list[dict]]]:
    """(table, dt, hr, suite) -> (success, fingerprint, failing) of the newest validation, read-only."""
    if not Path(state_path).exists():
        return {}
    con = open_state_read_only(Path(state_path))
    try:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_name = 'quality_results'"
        ).fetchone()[0]
        if not exists:
            return {}
        rows = con.execute(
            "select table_name, dt, hr, suite, arg_max(success, validated_at), "
            "arg_max(fingerprint, validated_at), arg_max(failing, validated_at) "
            "from quality_results group by all"
        ).fetchall()
    finally:
        con.close()
    return {
        (t, d, h, s): (ok, fingerprint, json.loads(failing)) for t, d, h, s, ok, fingerprint, failing in rows
    }


# --- health: what detections and reports ask -------------------------------------------------------


@dataclass(frozen=True)
class PartitionHealth(PartitionHour):
    table: str
    dt: str
    hr: str
    status: str  # passed | failed | unvalidated
    failing: tuple[str, ...] = field(default=())  # "suite: expectation(column)" labels, or why unvalidated

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "dt": self.dt,
            "hr": self.hr,
            "status": self.status,
            "failing": list(self.failing),
        }


def partition_health(
    state_path: str | Path,
    lake_dir: str | Path,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    suites: list[Suite] | None = None,
) -> list[PartitionHealth]:
    """Health of every committed partition of a gated table whose hour overlaps [start, end).

    failed: the newest validation of the current files failed at least one suite.
    unvalidated: some suite never ran on the partition, or files changed since it ran.
    passed: every suite passed on exactly the files now in the partition.
    """
    suites = suites if suites is not None else load_suites()
    latest = _latest_results(Path(state_path))
    lower = naive_utc(start) if start else None
    upper = naive_utc(end) if end else None
    health = []
    for partition in committed_partitions(lake_dir, gated_tables(suites)):
        if (lower and partition.end <= lower) or (upper and partition.start >= upper):
            continue
        fingerprint = partition.fingerprint()
        failing, missing, stale = [], [], []
        for suite in (suite for suite in suites if suite.table == partition.table):
            result = latest.get((partition.table.name, partition.dt, partition.hr, suite.name))
            if result is None:
                missing.append(suite.name)
            elif result[1] != fingerprint:
                stale.append(suite.name)
            elif not result[0]:
                failing += [
                    f"{suite.name}: {item['expectation']}({item['column']})" if item["column"]
                    else f"{suite.name}: {item['expectation']}"
                    for item in result[2]
                ]  # fmt: skip
        # validate's unreadable-file finding counts for as long as the files it judged are unchanged
        files_result = latest.get((partition.table.name, partition.dt, partition.hr, READABLE_FILES_SUITE))
        if files_result and files_result[1] == fingerprint and not files_result[0]:
            failing += [f"{READABLE_FILES_SUITE}: {item['column']}" for item in files_result[2]]
        if failing:
            status, details = "failed", failing
        elif missing or stale:
            status = "unvalidated"
            details = [f"{name}: never validated" for name in missing] + [
                f"{name}: files changed since validation" for name in stale
            ]
        else:
            status, details = "passed", []
        health.append(
            PartitionHealth(partition.table.name, partition.dt, partition.hr, status, tuple(details))
        )
    return health


def degraded_note(health: Iterable[PartitionHealth]) -> str | None:
    """One line saying why results over these partitions are degraded; None when all passed."""
    bad = [item for item in health if item.status != "passed"]
    if not bad:
        return None
    failed = sum(item.status == "failed" for item in bad)
    parts = [
        f"{item.table} dt={item.dt} hr={item.hr} {item.status}"
        + (f" ({'; '.join(item.failing)})" if item.status == "failed" else "")
        for item in bad
    ]
    return f"degraded: {failed} failed and {len(bad) - failed} unvalidated partition(s): " + ", ".join(parts)


def mark_degraded(alerts: list[dict[str, Any]], health: Iterable[PartitionHealth]) -> list[dict[str, Any]]:
    """Add evidence.data_quality to each alert whose window overlaps a failed or unvalidated partition.

    The alert contract leaves evidence open, so the mark travels with the alert to every sink.
    """
    # Each partition's hour once, not once per alert: a run has hundreds of alerts and partitions.
    bad = [(item, item.start, item.end) for item in health if item.status != "passed"]
    for alert in alerts:
        window_start = naive_utc(dt.datetime.fromisoformat(alert["window_start"]))
        window_end = naive_utc(dt.datetime.fromisoformat(alert["window_end"]))
        overlapping = [item for item, start, end in bad if start < window_end and window_start < end]
        if overlapping:
            alert["evidence"]["data_quality"] = {
                "status": "degraded",
                "partitions": [item.to_json() for item in overlapping],
            }
    return alerts


# --- data-quality alerts ---------------------------------------------------------------------------


def data_quality_alert(result: SuiteResult, created_at: dt.datetime) -> dict[str, Any]:
    """The alert for one failed suite on one partition, valid against schemas/alert.schema.json."""
    partition = result.partition
    key = dedup_key(
        DATA_QUALITY_DETECTION, [partition.table.name, partition.dt, partition.hr, result.suite.name]
    )
    window_start = partition.start.replace(tzinfo=dt.UTC)
    alert = {
        "alert_id": alert_id(key, window_start, DATA_QUALITY_SUPPRESSION_MINUTES),
        "detection_id": DATA_QUALITY_DETECTION,
        "title": "Data-quality expectation failed on a lake partition",
        "severity": result.suite.alert_severity,
        # The contract has no "partition" entity; region (a slice of the data) is the closest kind.
        "entity_type": "region",
        "entity_id": f"{partition.table.name}/dt={partition.dt}/hr={partition.hr}",
        "account_ids": [],
        "window_start": format_event_time(window_start),
        "window_end": format_event_time(partition.end.replace(tzinfo=dt.UTC)),
        "evidence": {
            "table": partition.table.name,
            "dt": partition.dt,
            "hr": partition.hr,
            "suite": result.suite.name,
            "failing_expectations": [_json_safe(item.to_json()) for item in result.failing],
            "evaluated_expectations": result.evaluated,
            "result_file": str(result.result_path),
        },
        "runbook": DATA_QUALITY_RUNBOOK,
        "dedup_key": key,
        "created_at": format_event_time(created_at.astimezone(dt.UTC)),
        # Broken data is the operator's problem at once, whatever else is going on: its own incident.
        "risk_score": 100,
        "immediate": True,
        "techniques": {"attack": [], "atlas": []},  # broken data is no adversary's technique
    }
    validate_alert(alert)
    return alert


def record_and_route(
    config: Config, state_path: Path, results: list[SuiteResult], now: dt.datetime, raise_alerts: bool = True
) -> list[str]:
    """Store the results and hand one signal per failed suite and partition to the incident engine.

    A data-quality signal is immediate: its incident opens (and pages) at once, like a detection's would.
    Returns one line per page plus the engine's summary.
    """
    signals = [data_quality_alert(result, now) for result in results if not result.success and raise_alerts]
    router = load_router(config)  # a missing sink secret fails before anything is written
    settings = incident_settings(config)
    with AlertStore.open(state_path) as store:
        store_results(store.con, results)
        if not signals:
            return []
        policy = SignalPolicy(DATA_QUALITY_SUPPRESSION_MINUTES, max_contribution=100, links_accounts=False)
        engine = incidents.raise_signals(
            store,
            router,
            open_audit_log(config, state_path),
            signals,
            {DATA_QUALITY_DETECTION: policy},
            settings,
            now,
        )
        engine.delivery = router.deliver(
            store, now, incident_ids=[change["incident_id"] for change in engine.changes]
        )
    return [*(incidents.page_line(page) for page in engine.pages), engine.describe()]
