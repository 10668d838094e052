"""`usagewatch report`: the compliance summary of one day or week (pipelines/reports/report.py)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from pipelines.commands import arguments
from pipelines.commands.options import UsageError, add_config, add_lake, add_state, existing_lake
from pipelines.commands.progress import print_progress
from pipelines.incidents.alert_state import state_path
from pipelines.incidents.audit import open_audit_log
from pipelines.infra.config import load_config
from pipelines.lake.layout import lake_path
from pipelines.quality.settings import quality_settings
from pipelines.reports.pdf import find_chromium, print_pdf
from pipelines.reports.report import (
    PERIODS,
    chart_specs,
    gather,
    record_report,
    render_charts,
    report_period,
    write_incident_pages,
    write_report,
)


def run_report_command(args: argparse.Namespace) -> int:
    return report(args.period, args.date, args.config, args.lake, args.state, args.out, args.pdf)


def report(
    period_kind: str,
    day: dt.date | None = None,
    config_file: str | None = None,
    lake: str | Path | None = None,
    state: str | Path | None = None,
    out: str | Path | None = None,
    pdf: bool = False,
) -> int:
    """One report as the command prints it (the demo's step too); the exit code. Its errors reach cli.main's
    exit-code policy."""
    config = load_config(config_file)
    lake_dir = existing_lake(lake_path(config, lake))
    state_file = state_path(config, state)
    out_dir = Path(out) if out else quality_settings(config).reports_dir
    audit_log = open_audit_log(config, state)
    chromium = find_chromium() if pdf else None
    if pdf and not chromium:
        raise UsageError("--pdf needs chromium on PATH (apt-get install chromium)")
    period = report_period(period_kind, day)
    progress = print_progress("report")
    head = audit_log.head_hash()
    data = gather(lake_dir, state_file, period, head, progress)
    charts = render_charts(chart_specs(data))
    paths = write_report(data, charts, out_dir)
    pages = write_incident_pages(data, state_file, lake_dir, out_dir)
    if chromium:
        paths["pdf"] = paths["html"].with_suffix(".pdf")
        print_pdf(paths["html"], paths["pdf"], chromium)
    record = record_report(audit_log, period, data, head, paths)
    for kind, path in paths.items():
        print(f"{kind:>8}: {path}")
    if pages:
        print(f"   pages: {len(pages)} incident page(s) in {pages[0].parent}")
    if data["data_quality"]["note"]:
        print(data["data_quality"]["note"])
    print(f"audit: report recorded as seq {record['seq']}; head hash quoted in the report: {head}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a compliance summary (HTML, Markdown, JSON)",
        description="Summarise one day or ISO week: traffic by country, restricted-region access by account, "
        "incidents and their acknowledgements, rings, signals by detection, top accounts, data quality, and "
        "the audit head hash.",
    )
    parser.add_argument("--period", choices=PERIODS, required=True)
    parser.add_argument(
        "--date",
        type=arguments.day,
        metavar="YYYY-MM-DD",
        help="the day to report (daily; default yesterday) or a day of the week to report (weekly; default "
        "last week); also today or yesterday",
    )
    parser.add_argument("--out", help="output directory (default: quality.reports_dir of the configuration)")
    add_config(parser)
    add_lake(parser)
    add_state(parser)
    parser.add_argument(
        "--pdf", action="store_true", help="also print the HTML to PDF with headless Chromium"
    )
    parser.set_defaults(func=run_report_command)
