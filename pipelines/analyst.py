"""DuckDB analyst layer: views over the Parquet lake and the read-only `usagewatch sql` command."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import math
import re
import sys
from pathlib import Path

import duckdb

from pipelines.contracts import format_event_time
from pipelines.lake import TABLES, LakeTable
from pipelines.paths import SCHEMAS_DIR, SQL_DIR

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


class ReadOnlyViolation(ValueError):
    """The analyst sent something other than one SELECT/WITH statement."""


def sql_string_literal(value: str) -> str:
    """Quote a value as a SQL string literal (single quotes doubled), safe inside generated SQL."""
    return "'" + value.replace("'", "''") + "'"


def _typed_empty_relation(table: LakeTable) -> str:
    columns = ", ".join(
        f"cast(null as {_DUCKDB_TYPES[flink_type]}) as {name}" for name, flink_type in table.columns
    )
    return f"(select {columns} limit 0)"


def lake_relation(table: LakeTable, lake_dir: str | Path) -> str:
    """A relation over the table's committed files that always has every column of pipelines/lake.py.

    Union-by-name with a typed empty relation keeps the lake.py column order and types, fills columns
    that older files lack with nulls, and makes a table with no files yet an empty relation instead of
    a "no files found" error.
    """
    empty = _typed_empty_relation(table)
    if not any(table.path(lake_dir).glob("dt=*/hr=*/part-*")):
        return empty
    # dt/hr are STRING in lake.py; without hive_types DuckDB would guess DATE/BIGINT.
    parquet = (
        f"read_parquet({sql_string_literal(table.glob(lake_dir))}, hive_partitioning = true, "
        "union_by_name = true, hive_types = {'dt': 'varchar', 'hr': 'varchar'})"
    )
    return f"({empty} union all by name select * from {parquet})"


def render_view_sql(view_file: Path, lake_dir: str | Path) -> str:
    tables = {table.name: table for table in TABLES}

    def expand(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "lake" and name in tables:
            return lake_relation(tables[name], lake_dir)
        if kind == "reference" and (REFERENCE_DIR / name).is_file():
            return sql_string_literal(str(REFERENCE_DIR / name))
        raise ValueError(f"{view_file}: unknown placeholder {match.group(0)!r}")

    return _PLACEHOLDER.sub(expand, view_file.read_text())


def open_lake(lake_dir: str | Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table plus the reference views.

    read_only=True locks the connection down once the views exist: no file access outside the lake and
    the reference directory (so no COPY TO, ATTACH, INSTALL/LOAD, reading arbitrary files), and the
    configuration cannot be changed back. Statement filtering is `execute_read_only`'s job.
    """
    lake_dir = Path(lake_dir).resolve()
    con = duckdb.connect()
    for view_file in sorted(VIEWS_DIR.glob("*.sql")):
        try:
            con.execute(render_view_sql(view_file, lake_dir))
        except duckdb.Error as error:
            con.close()
            raise ValueError(f"{view_file}: {error}") from error
    if read_only:
        # Views read lazily, so their directories must stay readable after external access is off.
        allowed = [str(lake_dir) + "/", str(REFERENCE_DIR.resolve()) + "/"]
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


def _display(value) -> str:
    if value is None:
        return "NULL"
    rendered = to_json_value(value)
    return rendered if isinstance(rendered, str) else json.dumps(rendered)


def format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[_display(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values: list[str]) -> str:
        return " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    separator = "-+-".join("-" * width for width in widths)
    body = [line(columns), separator, *(line(row) for row in cells)]
    body.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(body)


def _write_output(columns: list[str], rows: list[tuple], output_format: str) -> None:
    if output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[_display(v) if v is not None else "" for v in row] for row in rows])
    elif output_format == "json":
        for row in rows:
            print(json.dumps({name: to_json_value(v) for name, v in zip(columns, row, strict=True)}))
    else:
        print(format_table(columns, rows))


def run_sql_command(args: argparse.Namespace) -> int:
    if not Path(args.lake).is_dir():
        print(f"error: lake directory {args.lake} does not exist", file=sys.stderr)
        return 2
    con = open_lake(args.lake, read_only=True)
    try:
        columns, rows = execute_read_only(con, args.query)
    except ReadOnlyViolation as refusal:
        print(f"refused: {refusal}", file=sys.stderr)
        return 2
    except duckdb.Error as error:
        print(f"query failed: {error}", file=sys.stderr)
        return 1
    finally:
        con.close()
    _write_output(columns, rows, args.format)
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="run one read-only SQL query over the lake",
        description="Run one SELECT/WITH query over the lake views "
        f"({', '.join(table.name for table in TABLES)}, restricted_countries).",
    )
    parser.add_argument("--lake", required=True, help="lake directory")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("query", help="one SELECT or WITH statement")
    parser.set_defaults(func=run_sql_command)
