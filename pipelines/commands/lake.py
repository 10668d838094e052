"""`usagewatch sql` (read-only analyst queries over the lake: one, or an interactive session) and
`usagewatch compact` (merge the small Parquet files of closed partitions)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile

import duckdb

from pipelines.commands import sql_session
from pipelines.commands.cli import FAILURE, USAGE, exit_code_of
from pipelines.commands.options import (
    UsageError,
    add_config,
    add_lake,
    add_state,
    config_of,
    existing_lake,
    lake_of,
    state_of,
)
from pipelines.infra.rendering import cut_note, display_value, format_table, terminal_safe, to_json_value
from pipelines.lake import catalog
from pipelines.lake.analyst import (
    DEFAULT_ROW_LIMIT,
    STATE_TABLES,
    TERMINAL_ROW_LIMIT,
    AnalystLimits,
    QueryInterrupted,
    QueryResult,
    QueryTimeout,
    ReadOnlyViolation,
    analyst_limits,
    open_lake,
    query_with_limits,
)
from pipelines.lake.compaction import compact
from pipelines.lake.layout import TABLES, is_lake


def add_parser(subparsers) -> None:
    """Both commands: cli imports this module for either."""
    _add_sql_parser(subparsers)
    _add_compact_parser(subparsers)


# --- sql -------------------------------------------------------------------------------------------


def write_result(result: QueryResult, output_format: str) -> None:
    """The result on stdout as a table, CSV or JSON lines; a cut CSV/JSON export says so on stderr."""
    if result.cut and output_format != "table":
        print(cut_note(result.total_rows, len(result.rows)), file=sys.stderr)  # stdout stays a clean export
    if output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([[display_value(v) if v is not None else "" for v in row] for row in result.rows])
    elif output_format == "json":
        for row in result.rows:
            print(json.dumps({name: to_json_value(v) for name, v in zip(result.columns, row, strict=True)}))
    else:
        print(format_table(result.columns, result.rows, result.total_rows))


def run_query(
    con: duckdb.DuckDBPyConnection,
    query: str,
    limits: AnalystLimits,
    max_rows: int | None,
    output_format: str,
) -> int:
    """One analyst query, printed; a refusal or failure is printed instead, with cli's exit code for it (a
    session goes on after a statement that failed, so this is the one handler that catches)."""
    try:
        result = query_with_limits(con, query, limits.timeout_seconds, max_rows)
    except QueryInterrupted:
        print("interrupted", file=sys.stderr)
        return FAILURE
    except (duckdb.Error, QueryTimeout, ReadOnlyViolation) as error:
        code = exit_code_of(error)
        print(f"{'refused' if code == USAGE else 'query failed'}: {error}", file=sys.stderr)
        return code
    write_result(result, output_format)
    return 0


def schema_text(
    con: duckdb.DuckDBPyConnection, relation: str | None = None, with_columns: bool = True
) -> str | None:
    """Every relation with its description (then, with_columns, each one's columns); with `relation`,
    its columns only, or None when there is no such relation."""
    if relation is not None:
        columns, rows = catalog.column_rows(con, relation)
        return f"{terminal_safe(relation)}\n{format_table(columns, rows)}" if rows else None
    columns, relations = catalog.relation_rows(con)
    parts = [format_table(columns, relations)]
    if with_columns:
        parts += [schema_text(con, name) for name, *_ in relations]
    return "\n\n".join(parts)


def row_limit(args: argparse.Namespace) -> int | None:
    """Rows to print: --all or --limit 0 print all; else --limit, else a screenful on a terminal."""
    if args.all or args.limit == 0:
        return None
    if args.limit is not None:
        return args.limit
    return TERMINAL_ROW_LIMIT if args.format == "table" and sys.stdout.isatty() else DEFAULT_ROW_LIMIT


def run_sql_command(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 (no limit) or more")
    if args.schema is not None and args.query is not None:
        raise UsageError("--schema lists the relations; give it no query")
    config = config_of(args)
    lake = existing_lake(lake_of(args, config))
    limits, state_file = analyst_limits(config), state_of(args, config)
    if not is_lake(lake):
        tables = ", ".join(table.name for table in TABLES)
        raise UsageError(f"{lake} is not a lake: it holds none of the table folders ({tables})")
    with tempfile.TemporaryDirectory(prefix="usagewatch-sql-") as spill:
        con = open_lake(lake, read_only=True, limits=limits, temp_directory=spill, state_file=state_file)
        try:
            if args.schema is not None:
                text = schema_text(con, args.schema or None)
                if text is None:
                    raise UsageError(f"no table or view named '{terminal_safe(args.schema)}'")
                print(text)
                return 0
            max_rows = row_limit(args)
            if args.query is None:
                return sql_session.run_session(
                    execute=lambda statement: run_query(con, statement, limits, max_rows, args.format),
                    describe=lambda name: schema_text(con, name, with_columns=False),
                    interrupt=con.interrupt,
                )
            return run_query(con, args.query, limits, max_rows, args.format)
        finally:
            con.close()


def _add_sql_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="query the lake read-only: one SQL query, or an interactive session without one",
        description="Run one SELECT/WITH query over the lake views "
        f"({', '.join(table.name for table in TABLES)}, events_enriched, restricted_countries, ...) and the "
        f"state database's {' and '.join(STATE_TABLES)} (copied in at start); with no query, an interactive "
        "session (readline, history in the run directory; \\d lists the relations, \\d NAME one's columns). "
        "Only the lake's table folders and the reference data are readable; every query runs under the "
        "analyst: limits and is interrupted at analyst.timeout_seconds.",
    )
    add_lake(
        parser,
        "lake directory, only its table folders readable (default: lake.path of the configuration)",
    )
    add_config(
        parser,
        "usagewatch.yml whose analyst: section sets the query limits and whose state.path holds the "
        "signals and incidents (default: repo root, or $USAGEWATCH_CONFIG)",
    )
    add_state(parser)
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help=f"print at most N rows, with a note when more were cut (default: {TERMINAL_ROW_LIMIT} on a "
        f"terminal, {DEFAULT_ROW_LIMIT:,} into a pipe or file; 0: all)",
    )
    limit.add_argument("--all", action="store_true", help="print every row")
    parser.add_argument(
        "--schema",
        nargs="?",
        const="",
        metavar="NAME",
        help="list the tables and views and their columns, one line of description each (NAME: only its "
        "columns)",
    )
    parser.add_argument("query", nargs="?", help="one SELECT or WITH statement (none: interactive session)")
    parser.set_defaults(func=run_sql_command)


# --- compact ---------------------------------------------------------------------------------------


def run_compact_command(args: argparse.Namespace) -> int:
    lake_dir = existing_lake(lake_of(args))
    if args.min_files < 2:
        raise UsageError("--min-files must be at least 2")
    tables = [table for table in TABLES if args.table in (None, table.name)]
    results = compact(lake_dir, tables, args.min_files)
    for result in results:
        print(f"{result.partition.relative_to(lake_dir)}: {result.files_before} files -> 1")
    print(f"compacted {len(results)} partition(s), {sum(r.files_before for r in results)} files")
    return 0


def _add_compact_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compact",
        help="compact small Parquet files in the lake",
        description="Rewrite the committed part-* files of every closed partition (one with Flink's "
        "_SUCCESS marker) into one Parquet file. Open partitions are never touched.",
    )
    add_lake(parser)
    add_config(parser)
    parser.add_argument("--table", choices=[table.name for table in TABLES], help="only this table")
    parser.add_argument(
        "--min-files", type=int, default=2, help="compact a partition only from this many files (default 2)"
    )
    parser.set_defaults(func=run_compact_command)
