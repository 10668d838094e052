"""DuckDB analyst layer: views over the Parquet lake (and the state's signals and incidents) and the
read-only `usagewatch sql` command."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import math
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.detect.enrichment import register_lookup
from pipelines.infra.config import Config, ConfigError, load_config
from pipelines.infra.paths import SCHEMAS_DIR, SQL_DIR
from pipelines.lake.layout import TABLES, LakeTable, TableFiles, is_lake
from pipelines.stream.contracts import format_event_time

VIEWS_DIR = SQL_DIR / "views"
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


# Terminal output: rows shown unless --limit says otherwise.
DEFAULT_ROW_LIMIT = 1000
ANALYST_KEYS = frozenset({"timeout_seconds", "memory_limit", "threads", "max_temp_directory_size"})
# A DuckDB size setting: a number and a unit ("512MiB", "2 GB").
_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


class ReadOnlyViolation(ValueError):
    """The analyst sent something other than one SELECT/WITH statement."""


class QueryTimeout(RuntimeError):
    """The query ran longer than analyst.timeout_seconds and was interrupted."""


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


def sql_string_literal(value: str) -> str:
    """Quote a value as a SQL string literal (single quotes doubled), safe inside generated SQL."""
    return "'" + value.replace("'", "''") + "'"


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
        raise ValueError(f"{view_file}: unknown placeholder {match.group(0)!r}")

    return _PLACEHOLDER.sub(expand, view_file.read_text())


# The state database's tables as analysts see them: (name, expression over the stored row, type).
_STATE_TABLES = {
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
    for table, columns in _STATE_TABLES.items():
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
        print(f"warning: skipped {bad}", file=sys.stderr)
    con = duckdb.connect()
    register_lookup(con)  # events_enriched calls it
    for view_file in sorted(VIEWS_DIR.glob("*.sql")):
        try:
            con.execute(render_view_sql(view_file, lake_dir, files))
        except duckdb.Error as error:
            con.close()
            raise ValueError(f"{view_file}: {error}") from error
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
            raise ValueError(f"{state_file}: cannot read the state database: {error}") from error
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


def query_with_limits(
    con: duckdb.DuckDBPyConnection, query: str, timeout_seconds: float, max_rows: int | None
) -> tuple[list[str], list[tuple], bool]:
    """Run one read-only query, interrupted after `timeout_seconds`; (columns, at most max_rows rows, cut)."""
    check_read_only(query)
    timer = threading.Timer(timeout_seconds, con.interrupt)  # DuckDB has no statement timeout of its own
    timer.start()
    try:
        cursor = con.execute(query)
        columns = [column[0] for column in cursor.description]
        if max_rows is None:
            return columns, cursor.fetchall(), False
        rows = cursor.fetchmany(max_rows + 1)  # one more than shown tells whether anything was cut
        return columns, rows[:max_rows], len(rows) > max_rows
    except duckdb.InterruptException as error:
        raise QueryTimeout(f"timed out after {timeout_seconds:g} s (analyst.timeout_seconds)") from error
    finally:
        timer.cancel()


def to_json_value(value):
    """A JSON-safe rendering of a DuckDB value (timestamps as RFC 3339 UTC with Z)."""
    if isinstance(value, dt.datetime):
        return format_event_time(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    return value


def _escape_character(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    """Text with every non-printable character escaped (\\x1b, \\x00, \\u202e...).

    Data in the lake comes from producers that may be hostile: a raw ESC could rewrite the analyst's
    terminal, NUL and C1 controls confuse it, and bidi overrides make a cell read differently.
    """
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else _escape_character(character) for character in text
    )


def _display(value) -> str:
    if value is None:
        return "NULL"
    rendered = to_json_value(value)
    return rendered if isinstance(rendered, str) else json.dumps(rendered)


def format_table(columns: list[str], rows: list[tuple], cut: bool = False) -> str:
    """Rows as an aligned text table, every cell escaped for the terminal (see terminal_safe)."""
    cells = [[terminal_safe(_display(value)) for value in row] for row in rows]
    columns = [terminal_safe(name) for name in columns]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values: list[str]) -> str:
        return " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    body = [line(columns), separator, *(line(row) for row in cells)]
    body.append(_cut_note(len(rows)) if cut else f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(body)


def _cut_note(shown: int) -> str:
    return f"(first {shown} rows; more were cut: --limit N to change, --limit 0 for all)"


def _write_output(columns: list[str], rows: list[tuple], output_format: str, cut: bool) -> None:
    if cut and output_format != "table":
        print(_cut_note(len(rows)), file=sys.stderr)  # stdout stays a clean CSV / JSON lines export
    if output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[_display(v) if v is not None else "" for v in row] for row in rows])
    elif output_format == "json":
        for row in rows:
            print(json.dumps({name: to_json_value(v) for name, v in zip(columns, row, strict=True)}))
    else:
        print(format_table(columns, rows, cut))


def run_sql_command(args: argparse.Namespace) -> int:
    # Imported here: the state module uses this one's table formatting.
    from pipelines.incidents.alert_state import state_path

    lake = Path(args.lake)
    if not lake.is_dir():
        print(f"error: lake directory {lake} does not exist", file=sys.stderr)
        return 2
    if not is_lake(lake):
        tables = ", ".join(table.name for table in TABLES)
        print(f"error: {lake} is not a lake: it holds none of the table folders ({tables})", file=sys.stderr)
        return 2
    if args.limit < 0:
        print("error: --limit must be 0 (no limit) or more", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        limits, state_file = analyst_limits(config), state_path(config, args.state)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="usagewatch-sql-") as spill:
        try:
            con = open_lake(lake, read_only=True, limits=limits, temp_directory=spill, state_file=state_file)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        try:
            columns, rows, cut = query_with_limits(
                con, args.query, limits.timeout_seconds, args.limit or None
            )
        except ReadOnlyViolation as refusal:
            print(f"refused: {refusal}", file=sys.stderr)
            return 2
        except (duckdb.Error, QueryTimeout) as error:
            print(f"query failed: {error}", file=sys.stderr)
            return 1
        finally:
            con.close()
    _write_output(columns, rows, args.format, cut)
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="run one read-only SQL query over the lake",
        description="Run one SELECT/WITH query over the lake views "
        f"({', '.join(table.name for table in TABLES)}, restricted_countries) and the state database's "
        f"{' and '.join(_STATE_TABLES)} (copied in at start). Only the lake's table folders and the "
        "reference data are readable; the query runs under the analyst: limits and is interrupted at "
        "analyst.timeout_seconds.",
    )
    parser.add_argument("--lake", required=True, help="lake directory (only its table folders are readable)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="usagewatch.yml whose analyst: section sets the query limits and whose state.path holds the "
        "signals and incidents (default: repo root, or $USAGEWATCH_CONFIG)",
    )
    parser.add_argument("--state", help="state database (default: state.path of the configuration)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        default=DEFAULT_ROW_LIMIT,
        help=f"print at most N rows, with a note when more were cut (default {DEFAULT_ROW_LIMIT}; 0: all)",
    )
    parser.add_argument("query", help="one SELECT or WITH statement")
    parser.set_defaults(func=run_sql_command)
