"""`usagewatch sql` (one read-only analyst query over the lake) and `usagewatch compact` (merge the small
Parquet files of closed partitions)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile

import duckdb

from pipelines.commands.options import add_config, add_lake, add_state, config_of, lake_of, state_of
from pipelines.infra.config import ConfigError
from pipelines.infra.rendering import cut_note, display_value, format_table, to_json_value
from pipelines.lake.analyst import (
    DEFAULT_ROW_LIMIT,
    STATE_TABLES,
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


def _write_output(columns: list[str], rows: list[tuple], output_format: str, cut: bool) -> None:
    if cut and output_format != "table":
        print(cut_note(len(rows)), file=sys.stderr)  # stdout stays a clean CSV / JSON lines export
    if output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[display_value(v) if v is not None else "" for v in row] for row in rows])
    elif output_format == "json":
        for row in rows:
            print(json.dumps({name: to_json_value(v) for name, v in zip(columns, row, strict=True)}))
    else:
        print(format_table(columns, rows, cut))


def run_sql_command(args: argparse.Namespace) -> int:
    try:
        config = config_of(args)
        lake = lake_of(args, config)
        limits, state_file = analyst_limits(config), state_of(args, config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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


def _add_sql_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="run one read-only SQL query over the lake",
        description="Run one SELECT/WITH query over the lake views "
        f"({', '.join(table.name for table in TABLES)}, restricted_countries) and the state database's "
        f"{' and '.join(STATE_TABLES)} (copied in at start). Only the lake's table folders and the "
        "reference data are readable; the query runs under the analyst: limits and is interrupted at "
        "analyst.timeout_seconds.",
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
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        default=DEFAULT_ROW_LIMIT,
        help=f"print at most N rows, with a note when more were cut (default {DEFAULT_ROW_LIMIT}; 0: all)",
    )
    parser.add_argument("query", help="one SELECT or WITH statement")
    parser.set_defaults(func=run_sql_command)


# --- compact ---------------------------------------------------------------------------------------


def run_compact_command(args: argparse.Namespace) -> int:
    lake_dir = lake_of(args)
    if not lake_dir.is_dir():
        print(f"error: lake directory {lake_dir} does not exist", file=sys.stderr)
        return 2
    if args.min_files < 2:
        print("error: --min-files must be at least 2", file=sys.stderr)
        return 2
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
