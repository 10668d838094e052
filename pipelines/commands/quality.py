"""`usagewatch validate`: the data-quality suites over the lake's committed partitions
(pipelines/quality/gates.py); a failed suite raises a data-quality signal."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

from pipelines.commands import arguments
from pipelines.commands.options import add_config, add_lake, add_state, existing_lake
from pipelines.commands.progress import print_progress
from pipelines.incidents.alert_state import state_path
from pipelines.infra.config import load_config
from pipelines.infra.rendering import format_table
from pipelines.lake.layout import lake_path
from pipelines.quality.gates import (
    SuiteResult,
    committed_partitions,
    partition_health,
    record_and_route,
    validate_partitions,
)
from pipelines.quality.settings import quality_settings
from pipelines.quality.suites import gated_tables, load_suites

logger = logging.getLogger(__name__)


def _summary_rows(results: list[SuiteResult]) -> list[tuple]:
    return [
        (
            r.partition.table.name,
            r.partition.dt,
            r.partition.hr,
            r.suite.name,
            "passed" if r.success else "FAILED",
            "; ".join(f.label for f in r.failing),
        )
        for r in results
    ]


def run_validate_command(args: argparse.Namespace) -> int:
    return validate(args.config, args.lake, args.state, args.date, args.table, args.only_new, args.no_alerts)


def validate(
    config_file: str | None = None,
    lake: str | Path | None = None,
    state: str | Path | None = None,
    day: dt.date | None = None,
    tables: list[str] | None = None,
    only_new: bool = False,
    no_alerts: bool = False,
) -> int:
    """One validation as the command prints it (the demo's step too); the exit code: 1 when a suite failed.
    Its errors reach cli.main's exit-code policy."""
    config = load_config(config_file)
    lake_dir = existing_lake(lake_path(config, lake))
    settings = quality_settings(config)
    state_file = state_path(config, state)
    suites = load_suites()
    gated = [table for table in gated_tables(suites) if not tables or table.name in tables]
    day_text = day.isoformat() if day else None
    partitions = committed_partitions(lake_dir, gated, day_text)
    if only_new:
        settled = {(h.table, h.dt, h.hr) for h in partition_health(state_file, lake_dir, suites=suites)
                   if h.status != "unvalidated"}  # fmt: skip
        partitions = [p for p in partitions if (p.table.name, p.dt, p.hr) not in settled]
    if not partitions:
        print(f"nothing to validate in {lake_dir}" + (f" for {day_text}" if day_text else ""))
        return 0
    logger.info(f"validating {len(partitions)} partition(s) with {len(suites)} suite(s)")
    now = dt.datetime.now(dt.UTC)
    results = validate_partitions(
        lake_dir, settings.results_dir, partitions, suites, now, print_progress("validate")
    )
    alert_lines = record_and_route(config, state_file, results, now, raise_alerts=not no_alerts)
    print(
        format_table(["table", "dt", "hr", "suite", "status", "failing expectations"], _summary_rows(results))
    )
    for line in alert_lines:
        print(line)
    failed = sum(not result.success for result in results)
    print(
        f"{len(results) - failed} passed, {failed} failed; results in {state_file} and {settings.results_dir}"
    )
    return 1 if failed else 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="run the data-quality expectation suites over the lake",
        description="Run the Great Expectations suites of schemas/expectations on every committed partition "
        "(or one day's), store the results in the state database and GX result JSON, and raise a "
        "data-quality alert through the routing for each failed suite. Exit 1 when any suite failed.",
    )
    add_config(parser)
    add_lake(parser)
    parser.add_argument(
        "--date",
        type=arguments.day,
        metavar="YYYY-MM-DD",
        help="only this day's partitions (UTC; or today, yesterday)",
    )
    parser.add_argument(
        "--only-new",
        action="store_true",
        help="skip partitions already validated on their current files (for schedules)",
    )
    parser.add_argument("--table", action="append", help="only this lake table (repeatable)")
    add_state(parser)
    parser.add_argument(
        "--no-alerts", action="store_true", help="store results but raise no data-quality alerts"
    )
    parser.set_defaults(func=run_validate_command)
