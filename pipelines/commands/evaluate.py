"""`usagewatch evaluate`: the command over pipelines/detect/evaluation.py (one corpus) and
pipelines/detect/sweep.py (--sweep)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from pipelines.commands import arguments
from pipelines.commands.options import CommandFailed, UsageError, existing_lake
from pipelines.detect.evaluation import ENGINES, evaluate
from pipelines.detect.incident_scoring import PAGE_SEVERITY
from pipelines.detect.sweep import AXES, heatmap_png, sweep, table
from pipelines.infra.rendering import format_table

logger = logging.getLogger(__name__)


def render_report(report: dict[str, Any]) -> str:
    rows = []
    for kind in report["kinds"]:
        detect = kind["time_to_detect_minutes"]
        rows.append(
            (
                kind["kind"],
                kind["name"],
                kind["accounts"],
                kind["named"],
                report["named_by_signals"][kind["name"]],
                ("recall " if kind["kind"] == "campaign" else "false positives ") + f"{kind['rate']:.1%}",
                f"{kind['pages']} / {kind['campaigns']}" if kind["kind"] == "campaign" else "",
                f"{detect['median']} / {detect['worst']}" if detect else "",
            )
        )
    table = format_table(
        [
            "kind",
            "campaign kind / benign class",
            "accounts",
            f"named by incidents (>= {report['page_severity']})",
            "named by signals",
            "rate",
            "pages / campaigns",
            "time to detect min (median / worst)",
        ],
        rows,
    )
    timings = ", ".join(
        f"{name.removesuffix('_seconds')} {report[name]:.1f} s"
        for name in ("lake_seconds", "detect_seconds")
        if name in report
    )
    return (
        f"{table}\n{report['incidents']} incident(s), {report['pages']} page(s) "
        f"({report['page_notifications']} paging notification(s) with escalations); benign: "
        f"{report['benign_named_rate']:.2%} of {report['benign_accounts']} accounts named, "
        f"{report['benign_pages']} page(s) = {report['benign_pages_per_thousand_per_day']:.2f} per 1,000 "
        f"accounts per day; {report['detect_cycles']} detect cycle(s); {timings}"
    )


def run_evaluate_command(args: argparse.Namespace) -> int:
    if args.sweep:
        return run_sweep_command(args)
    if not (args.events and args.labels):
        raise UsageError("--events and --labels are required (or --sweep)")
    events_path, labels_path = Path(args.events), Path(args.labels)
    for path in (events_path, labels_path):
        if not path.is_file():
            raise UsageError(f"file not found: {path}")
    lake_dir = existing_lake(Path(args.lake)) if args.lake else None
    try:
        _, _, report, _ = evaluate(events_path, labels_path, lake_dir, args.engine, args.every)
    except RuntimeError as error:  # the replay job building the lake failed (its exit code in the message)
        raise CommandFailed(str(error)) from error
    print(json.dumps(report, indent=2) if args.json else render_report(report))
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="backtest detections and incidents on labelled traffic (recall, false positives, pages)",
        description="Build a lake from a labelled JSONL file (the aggregation job, or --engine duckdb), "
        "run detect into a scratch state with no sinks, and score the incidents: recall per campaign "
        "kind, false positives per benign class, pages per campaign and per 1,000 benign accounts a day, "
        f"counting incidents of severity >= {PAGE_SEVERITY}. With --every, detect runs once per that much "
        "event time and the time to detect is reported. With --sweep, generate field-profile corpora "
        "over each campaign's main parameters and print the table (see pipelines/detect/sweep.py).",
    )
    parser.add_argument("--events", help="JSONL file of access events")
    parser.add_argument("--labels", help="CSV: account_id,group,scenario_or_benign")
    parser.add_argument("--lake", help="an already filled lake of these events (skips building one)")
    parser.add_argument(
        "--engine", choices=ENGINES, default="flink", help="how the lake is built (default: flink, the job)"
    )
    parser.add_argument(
        "--every",
        type=arguments.duration,
        metavar="DURATION",
        help="run detect once per DURATION of event time, as `detect --every` would (time to detect)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--sweep", action="store_true", help="sweep the field profile's parameters")
    parser.add_argument("--seeds", default="11", help="with --sweep: comma-separated seeds (default 11)")
    parser.add_argument("--out", help="with --sweep: directory for the table, JSON and heatmap PNG")
    parser.add_argument(
        "--cells", help="with --sweep: only cells whose name contains one of these (comma-separated)"
    )
    parser.set_defaults(func=run_evaluate_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        raise UsageError(f"--sweep: --seeds must be integers, comma-separated: {args.seeds!r}") from None
    wanted = [name.strip() for name in (args.cells or "").split(",") if name.strip()]
    axes = tuple(axis for axis in AXES if not wanted or any(name in axis.name for name in wanted))
    if not axes or not seeds:
        raise UsageError("--sweep: no cell matches --cells, or no seed given")
    cells = sweep(axes, seeds, log=logger.info)
    rendered = table(cells)
    print(rendered)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.md").write_text(rendered + "\n", encoding="utf-8")
        (out / "sweep.json").write_text(json.dumps([cell.to_json() for cell in cells], indent=2) + "\n")
        (out / "sweep.png").write_bytes(heatmap_png(cells))
        logger.info(f"wrote {out / 'sweep.md'}, sweep.json and sweep.png")
    return 0
