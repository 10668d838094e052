"""DuckDB analyst layer: views over the Parquet lake (and the state's signals and incidents), and the
read-only query under limits that `usagewatch sql` runs (pipelines/commands/lake.py)."""

from __future__ import annotations

import logging
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.detect.enrichment import register_lookup
from pipelines.infra.config import Config
from pipelines.infra.paths import SCHEMAS_DIR, VIEWS_DIR
from pipelines.lake import catalog
from pipelines.lake.layout import TABLES, LakeTable, TableFiles, sql_string_literal

logger = logging.getLogger(__name__)

REFERENCE_DIR = SCHEMAS_DIR / "reference"

# Flink SQL type -> DuckDB type, for the typed empty relation that pins every view's columns.
_DUCKDB_TYPES = {
    "STRING": "varchar",
    "TIMESTAMP(3)": "timestamp",
    "BIGINT": "bigint",
    "INT": "integer",
    "DOUBLE": "double",
    "ARRAY<STRING>": "varchar[]",
}

# `{{ lake <table> }}` or `{{ reference <file> }}` inside a view file.
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s+([\w.-]+)\s*\}\}")

# Statement types an analyst may run: DESCRIBE/SHOW/SUMMARIZE parse as SELECT too, and are harmless.
_READ_ONLY_STATEMENT_TYPES = {duckdb.StatementType.SELECT}


# Rows printed unless --limit/--all say otherwise: a screenful on a terminal; 1,000 into a pipe or file
# (an export should say --limit 0 or --all, and is told on stderr when it was cut).
TERMINAL_ROW_LIMIT = 50
DEFAULT_ROW_LIMIT = 1000
ANALYST_KEYS = frozenset({"timeout_seconds", "memory_limit", "threads", "max_temp_directory_size"})
# A DuckDB size setting: a number and a unit ("512MiB", "2 GB").
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


class LakeError(ValueError):
    """The lake's views could not be created over its files, or the state database could not be read."""


class ReadOnlyViolation(ValueError):
    """The analyst sent something other than one SELECT/WITH statement."""


class QueryTimeout(RuntimeError):
    """The query ran longer than analyst.timeout_seconds and was interrupted."""


class QueryInterrupted(RuntimeError):
    """Someone else called the connection's interrupt() (Ctrl-C in the session) while the query ran."""


@dataclass(frozen=True)
class AnalystLimits:
    """What one `usagewatch sql` query may use (analyst: in usagewatch.yml); defaults fit a shared host."""

    timeout_seconds: float = 300.0
    memory_limit: str = "2GiB"
    threads: int = 2
    max_temp_directory_size: str = "4GiB"


def analyst_limits(config: Config) -> AnalystLimits:
    """The analyst: section, each value checked; a bad one is a ConfigError naming its line."""
    section = config.section("analyst", ANALYST_KEYS)
    defaults = AnalystLimits()
    sizes = {}
    for key in ("memory_limit", "max_temp_directory_size"):
        value = section.get(key, getattr(defaults, key))
        if not isinstance(value, str) or not _SIZE.match(value):
            raise config.error("analyst", f"analyst.{key} must be a size such as 2GiB, got {value!r}", key)
        sizes[key] = value
    timeout = section.get("timeout_seconds", defaults.timeout_seconds)
    threads = section.get("threads", defaults.threads)
    return AnalystLimits(
        timeout_seconds=float(config.check_number(timeout, 0.1, 86400, "analyst", "timeout_seconds")),
        threads=int(config.check_number(threads, 1, 256, "analyst", "threads", whole=True)),
        **sizes,
    )


def sql_identifier(name: str) -> str:
    """Quote a name as a SQL identifier (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def _typed_empty_relation(table: LakeTable) -> str:
    columns = ", ".join(
        f"cast(null as {_DUCKDB_TYPES[flink_type]}) as {name}" for name, flink_type in table.columns
    )
    return f"(select {columns} limit 0)"


def lake_relation(table: LakeTable, lake_dir: str | Path, files: TableFiles | None = None) -> str:
    """A relation over the table's readable committed files with every column of pipelines/lake/layout.py.

    Union-by-name with a typed empty relation keeps the lake.py column order and types, fills columns
    that older files lack with nulls, and makes a table with no files yet an empty relation instead of
    a "no files found" error. Unreadable files (see lake.scan_files) are left out, so one bad file does
    not take the whole table down.
    """
    files = files or table.committed_files(lake_dir)
    empty = _typed_empty_relation(table)
    if not files.readable:
        return empty
    if files.unreadable:
        sources = "[" + ", ".join(sql_string_literal(str(path)) for path in files.readable) + "]"
    else:
        sources = sql_string_literal(table.glob(lake_dir))  # one glob keeps the view small on big lakes
    # dt/hr are STRING in lake.py; without hive_types DuckDB would guess DATE/BIGINT.
    parquet = (
        f"read_parquet({sources}, hive_partitioning = true, "
        "union_by_name = true, hive_types = {'dt': 'varchar', 'hr': 'varchar'})"
    )
    return f"({empty} union all by name select * from {parquet})"


def render_view_sql(view_file: Path, lake_dir: str | Path, files: dict[str, TableFiles] | None = None) -> str:
    tables = {table.name: table for table in TABLES}

    def expand(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "lake" and name in tables:
            return lake_relation(tables[name], lake_dir, (files or {}).get(name))
        if kind == "reference" and (REFERENCE_DIR / name).is_file():
            return sql_string_literal(str(REFERENCE_DIR / name))
        raise LakeError(f"{view_file}: unknown placeholder {match.group(0)!r}")

    return _PLACEHOLDER.sub(expand, view_file.read_text())


# The state database's tables as analysts see them: (name, expression over the stored row, type).
STATE_TABLES = {
    "signals": (
        ("alert_id", "alert_id", "varchar"),
        ("detection_id", "detection_id", "varchar"),
        ("severity", "severity", "varchar"),
        ("status", "status", "varchar"),
        ("entity_type", "entity_type", "varchar"),
        ("entity_id", "entity_id", "varchar"),
        ("account_ids", "from_json(alert->'account_ids', '[\"varchar\"]')", "varchar[]"),
        ("risk_score", "cast(alert->>'risk_score' as integer)", "integer"),
        ("immediate", "cast(alert->>'immediate' as boolean)", "boolean"),
        ("window_start", "window_start", "timestamp"),
        ("window_end", "window_end", "timestamp"),
        ("incident_id", "incident_id", "varchar"),
        ("suppressed_by", "suppressed_by", "varchar"),
        ("dedup_key", "dedup_key", "varchar"),
        ("alert", "alert", "json"),
    ),
    "incidents": (
        ("incident_id", "incident_id", "varchar"),
        ("title", "title", "varchar"),
        ("severity", "severity", "varchar"),
        ("status", "status", "varchar"),
        ("risk_score", "risk_score", "integer"),
        ("account_count", "account_count", "integer"),
        ("account_ids", "from_json(incident->'account_ids', '[\"varchar\"]')", "varchar[]"),
        ("detection_ids", "from_json(incident->'detection_ids', '[\"varchar\"]')", "varchar[]"),
        ("signal_count", "cast(incident->>'signal_count' as integer)", "integer"),
        ("first_seen", "first_seen", "timestamp"),
        ("last_seen", "last_seen", "timestamp"),
        ("created_at", "created_at", "timestamp"),
        ("updated_at", "updated_at", "timestamp"),
        ("merged_into", "merged_into", "varchar"),
        ("ack_by", "ack_by", "varchar"),
        ("resolved_by", "resolved_by", "varchar"),
        ("incident", "incident", "json"),
    ),
}


def _load_state(con: duckdb.DuckDBPyConnection, state_file: Path) -> None:
    """`signals` and `incidents` from the state database: copied in and detached at once, so a query
    never holds the state file a running `detect` needs. An absent state gives empty tables."""
    present: set[str] = set()
    if state_file.exists():
        con.execute(f"attach {sql_string_literal(str(state_file))} as state_db (read_only)")
        present = {
            row[0]
            for row in con.execute(
                "select table_name from duckdb_tables() where database_name = 'state_db'"
            ).fetchall()
        }
    for table, columns in STATE_TABLES.items():
        if table in present:
            select = ", ".join(f"{expression} as {name}" for name, expression, _ in columns)
            con.execute(f"create table {table} as select {select} from state_db.{table}")
        else:
            typed = ", ".join(f"cast(null as {kind}) as {name}" for name, _, kind in columns)
            con.execute(f"create table {table} as select {typed} limit 0")
    if state_file.exists():
        con.execute("detach state_db")


def open_lake(
    lake_dir: str | Path,
    read_only: bool = True,
    limits: AnalystLimits | None = None,
    temp_directory: str | Path | None = None,
    state_file: Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table, events_enriched (geo gaps filled) and
    the reference views, and with `state_file` the state's signals and incidents.

    read_only=True locks the connection down once the views exist: only the lake's table folders and
    the reference directory are readable, whatever `lake_dir` is (so no COPY TO, ATTACH, INSTALL/LOAD,
    reading arbitrary files; DuckDB resolves `..` and symlinks before it checks), and the configuration
    cannot be changed back. `limits` (and a private `temp_directory` for spills) are set before the lock.
    Statement filtering is `execute_read_only`'s job. Unreadable lake files are skipped and named on
    stderr.
    """
    lake_dir = Path(lake_dir).resolve()
    files = {table.name: table.committed_files(lake_dir) for table in TABLES}
    for bad in (bad for table_files in files.values() for bad in table_files.unreadable):
        logger.warning(f"warning: skipped {bad}")
    con = duckdb.connect()
    register_lookup(con)  # events_enriched calls it
    for view_file in sorted(VIEWS_DIR.glob("*.sql")):
        try:
            con.execute(render_view_sql(view_file, lake_dir, files))
        except duckdb.Error as error:
            con.close()
            raise LakeError(f"{view_file}: {error}") from error
    if limits:
        con.execute("set memory_limit = $value", {"value": limits.memory_limit})
        con.execute("set threads = $value", {"value": limits.threads})
        con.execute("set max_temp_directory_size = $value", {"value": limits.max_temp_directory_size})
    if temp_directory:
        con.execute("set temp_directory = $value", {"value": str(temp_directory)})
    if state_file is not None:
        try:
            _load_state(con, Path(state_file).resolve())
        except duckdb.Error as error:
            con.close()
            raise LakeError(f"{state_file}: cannot read the state database: {error}") from error
    try:
        describe_relations(con, catalog.load_descriptions())
    except catalog.CatalogError:
        con.close()
        raise
    if read_only:
        # Views read lazily, so the table folders must stay readable after external access is off;
        # the lake's root and anything beside the tables stay closed.
        allowed = [str(table.path(lake_dir)) + "/" for table in TABLES] + [str(REFERENCE_DIR.resolve()) + "/"]
        con.execute("set allowed_directories = $allowed", {"allowed": allowed})
        con.execute("set autoinstall_known_extensions = false")
        con.execute("set autoload_known_extensions = false")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    return con


def describe_relations(
    con: duckdb.DuckDBPyConnection, descriptions: dict[str, catalog.RelationDescription]
) -> None:
    """COMMENT ON every relation of the connection, and each of its columns, that has a description."""
    _, relations = catalog.relation_rows(con)
    for name, kind, _, _ in relations:
        described = descriptions.get(name)
        if described is None:
            continue
        description = sql_string_literal(described.description)
        con.execute(f"comment on {kind} {sql_identifier(name)} is {description}")
        _, columns = catalog.column_rows(con, name)
        for column, _, _ in columns:
            if column in described.columns:
                target = f"{sql_identifier(name)}.{sql_identifier(column)}"
                description = sql_string_literal(described.columns[column])
                con.execute(f"comment on column {target} is {description}")


def check_read_only(query: str) -> str:
    """Return the query if it is exactly one SELECT/WITH statement, else raise ReadOnlyViolation."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise ReadOnlyViolation(f"cannot parse query: {error}") from error
    if len(statements) != 1:
        raise ReadOnlyViolation(f"expected exactly one statement, got {len(statements)}")
    statement_type = statements[0].type
    if statement_type not in _READ_ONLY_STATEMENT_TYPES:
        raise ReadOnlyViolation(
            f"only SELECT/WITH queries are allowed in analyst mode, not {statement_type.name}"
        )
    return query


def execute_read_only(
    con: duckdb.DuckDBPyConnection, query: str, parameters: dict | None = None
) -> tuple[list[str], list[tuple]]:
    """Run one read-only query; return (column names, rows)."""
    cursor = con.execute(check_read_only(query), parameters or {})
    columns = [column[0] for column in cursor.description]
    return columns, cursor.fetchall()


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]  # at most the row limit
    total_rows: int  # of the whole result: more than len(rows) when the limit cut it

    @property
    def cut(self) -> bool:
        return self.total_rows > len(self.rows)


def query_with_limits(
    con: duckdb.DuckDBPyConnection, query: str, timeout_seconds: float, max_rows: int | None
) -> QueryResult:
    """Run one read-only query, interrupted after `timeout_seconds`; at most max_rows rows are kept, the
    rest only counted (still under the timeout)."""
    check_read_only(query)
    timed_out = threading.Event()

    def time_out() -> None:
        timed_out.set()
        con.interrupt()

    timer = threading.Timer(timeout_seconds, time_out)  # DuckDB has no statement timeout of its own
    timer.start()
    try:
        cursor = con.execute(query)
        columns = [column[0] for column in cursor.description]
        if max_rows is None:
            rows = cursor.fetchall()
            return QueryResult(columns, rows, len(rows))
        rows = cursor.fetchmany(max_rows)
        with warnings.catch_warnings():
            # counting the rest as Arrow batches never builds Python tuples; DuckDB warns of the copy
            warnings.simplefilter("ignore", UserWarning)
            rest = sum(batch.num_rows for batch in cursor.to_arrow_reader(100_000))
        return QueryResult(columns, rows, len(rows) + rest)
    except duckdb.InterruptException as error:
        if not timed_out.is_set():
            raise QueryInterrupted("interrupted") from error
        raise QueryTimeout(f"timed out after {timeout_seconds:g} s (analyst.timeout_seconds)") from error
    finally:
        timer.cancel()
