"""`usagewatch` command line.

Each command lives in its own module, imported only when that command runs: some modules pull in
heavy libraries (PyFlink, Great Expectations), and `usagewatch sql` should not pay for them.
A module exposes add_parser(subparsers), registering its command(s) with set_defaults(func=handler).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from pipelines.infra import redaction

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pipelines.commands.demo", "run the whole pipeline locally end to end"),
    "kafka": ("pipelines.infra.kafka_broker", "run the local single-node Kafka broker (KRaft)"),
    "generate": ("pipelines.traffic.generator", "generate seeded synthetic access events with scenarios"),
    "job": ("pipelines.stream.flink_job", "run the streaming aggregation job on the local MiniCluster"),
    "replay": ("pipelines.stream.flink_job", "backfill the lake from a JSONL file of access events"),
    "sql": ("pipelines.lake.analyst", "run one read-only SQL query over the lake"),
    "detect": (
        "pipelines.detect.detections",
        "run the detections; correlate signals into incidents and route them",
    ),
    "incidents": ("pipelines.incidents.engine", "list, show, acknowledge and resolve incidents"),
    "signals": ("pipelines.incidents.alert_state", "list and show the signals the detections raised"),
    "alerts": ("pipelines.incidents.alert_state", "deprecated name of `signals`"),
    "audit": ("pipelines.incidents.audit", "verify the hash-chained audit log"),
    "detections": ("pipelines.commands.detections", "list, lint and test the detection rules"),
    "evaluate": ("pipelines.detect.evaluate", "backtest the detections on a labelled event file"),
    "validate": ("pipelines.quality.gates", "run the data-quality expectation suites over the lake"),
    "report": ("pipelines.reports.report", "write a compliance summary (HTML, Markdown, JSON)"),
    "schedule": ("pipelines.reports.schedule", "run detections, validation and reports on cron schedules"),
    "compact": ("pipelines.lake.compaction", "compact small Parquet files in the lake"),
    "cluster": ("pipelines.infra.cluster", "run a Flink session cluster and a 3-broker Kafka locally"),
}


def _overview_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usagewatch",
        description="Streaming security analytics for AI model providers.",
        epilog="commands:\n"
        + "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\nusagewatch COMMAND --help shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """The full parser for one command (its module imported)."""
    module_name, _ = COMMANDS[command]
    parser = argparse.ArgumentParser(prog="usagewatch")
    subparsers = parser.add_subparsers(dest="command", required=True)
    importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _overview_parser().parse_args(argv[:1] or ["--help"])
    args = build_parser(argv[0]).parse_args(argv)
    # Every error path ends here or prints on the way: no registered secret leaves the process, and an
    # unexpected error's traceback is redacted too (its messages may quote a URL or a response).
    with redaction.redacted_output():
        try:
            return int(args.func(args) or 0)
        except Exception:  # noqa: BLE001 (printed, redacted, as the traceback Python would print)
            print(redaction.redact(traceback.format_exc()).rstrip(), file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
