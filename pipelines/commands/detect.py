"""`usagewatch detect`: run the detections over the lake, once or --every so often, and hand their signals
to the incident engine (pipelines/detect/detections.py: detect_and_route, run_incrementally)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import threading
from pathlib import Path

from pipelines.commands import arguments
from pipelines.commands.options import add_config, add_lake, add_state, config_of, existing_lake, lake_of
from pipelines.detect.detections import detect_and_route, run_incrementally, summarize
from pipelines.incidents import engine as incidents
from pipelines.infra import clock
from pipelines.infra.config import Config

logger = logging.getLogger(__name__)


def run_detect_command(args: argparse.Namespace) -> int:
    config = config_of(args)
    lake = existing_lake(lake_of(args, config))
    output = Path(args.output) if args.output else None
    signals_output = Path(args.signals) if args.signals else None
    if args.every:
        return _detect_every(args, lake, config, output, signals_output)
    return detect(lake, config, args.state, output, signals_output, args.detection, args.since, args.until)


def detect(
    lake: Path,
    config: Config,
    state: str | Path | None = None,
    output: Path | None = None,
    signals_output: Path | None = None,
    only: list[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> int:
    """One detect run as the command prints it (the demo's step too); the exit code. Its errors reach
    cli.main's exit-code policy."""
    _make_parents(output, signals_output)
    run = detect_and_route(lake, config, state=state, only=only, since=since, until=until)
    for path, documents in ((output, run.changes), (signals_output, run.signals)):
        if path is not None:
            with path.open("w", encoding="utf-8") as sink:
                for document in documents:
                    sink.write(json.dumps(document, sort_keys=True) + "\n")
    print(summarize(run.selected, run.signals))
    for page in run.engine.pages:
        print(incidents.page_line(page))
    print(run.describe())
    if output is not None:
        print(f"{len(run.changes)} new or changed incident(s) written to {output}")
    if signals_output is not None:
        print(f"{len(run.signals)} signal(s) written to {signals_output}")
    return 0


def _make_parents(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


def _detect_every(
    args: argparse.Namespace, lake: Path, config: Config, output: Path | None, signals_output: Path | None
) -> int:
    _make_parents(output, signals_output)
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        logger.warning(f"{signal.Signals(signum).name}: stopping after the current cycle")
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        cycles = run_incrementally(
            lake,
            config,
            args.every,
            args.lookback,
            stop,
            state=args.state,
            only=args.detection,
            since=args.since,
            until=args.until,
            output=output,
            signals_output=signals_output,
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    logger.info(f"stopped after {cycles} cycle(s)", extra={"fields": {"cycles": cycles}})
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="run the detections over the lake; correlate their signals into incidents and route those",
        description="Run every enabled detection under sql/detections/<id>/ once (or only --detection NAME), "
        "record their signals in the state database (re-runs raise nothing new), correlate them into "
        "incidents, audit both and route the incidents opened or changed to the sinks of usagewatch.yml; "
        "prints one line per page. With --every, keep running over newly committed lake files until "
        "SIGINT/SIGTERM.",
    )
    add_lake(parser)
    parser.add_argument(
        "--output",
        help="JSONL file, one incident per line: every incident this run opened or changed, as routed "
        "(with `change`; with --every: appended)",
    )
    parser.add_argument(
        "--signals",
        help="JSONL file, one signal per line: every signal this run detected (with --every: appended, "
        "signals new to the state only)",
    )
    parser.add_argument(
        "--detection", action="append", metavar="NAME", help="run only this detection (repeatable)"
    )
    parser.add_argument(
        "--since",
        type=arguments.moment,
        help="only data at or after this time (2026-03-01T10:00Z) or this long ago (24h)",
    )
    parser.add_argument(
        "--until", type=arguments.moment, help="only data before this time (or this long ago)"
    )
    parser.add_argument(
        "--every", type=arguments.duration, metavar="DURATION", help="run incrementally, e.g. 60s"
    )
    parser.add_argument(
        "--lookback",
        type=arguments.duration,
        default=clock.parse_duration("24h"),
        metavar="DURATION",
        help="with --every: how far before the new files' hours the detections look (default 24h)",
    )
    add_config(parser)
    add_state(parser)
    # --every runs as a service: JSON lines for its log
    parser.set_defaults(func=run_detect_command, long_running=lambda args: args.every is not None)
