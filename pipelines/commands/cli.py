"""`usagewatch` command line: the one entry point, the command registry and the error policy.

Each command group lives in its own module of pipelines/commands, imported only when one of its commands
runs: some pull in heavy libraries (PyFlink, Great Expectations), and `usagewatch sql` should not pay for
them. A module exposes add_parser(subparsers), registering its command(s) with set_defaults(func=handler);
a handler parses nothing itself and calls the domain. Only this package imports argparse.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from pipelines.commands.options import add_verbosity
from pipelines.infra import redaction
from pipelines.infra.logs import configure_logging

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pipelines.commands.demo", "run the whole pipeline locally end to end"),
    "kafka": ("pipelines.commands.infra", "run the local single-node Kafka broker (KRaft)"),
    "generate": ("pipelines.commands.traffic", "generate seeded synthetic access events with scenarios"),
    "job": ("pipelines.commands.stream", "run the streaming aggregation job on the local MiniCluster"),
    "replay": ("pipelines.commands.stream", "backfill the lake from a JSONL file of access events"),
    "sql": ("pipelines.commands.lake", "run one read-only SQL query over the lake"),
    "detect": (
        "pipelines.commands.detect",
        "run the detections; correlate signals into incidents and route them",
    ),
    "incidents": ("pipelines.commands.incidents", "list, show, acknowledge and resolve incidents"),
    "signals": ("pipelines.commands.incidents", "list and show the signals the detections raised"),
    "alerts": ("pipelines.commands.incidents", "deprecated name of `signals`"),
    "audit": ("pipelines.commands.incidents", "verify the hash-chained audit log"),
    "indicators": ("pipelines.commands.exports", "load peers' STIX 2.1 indicator bundles"),
    "detections": ("pipelines.commands.detections", "list, lint and test the detection rules"),
    "evaluate": ("pipelines.commands.evaluate", "backtest the detections on a labelled event file"),
    "validate": ("pipelines.commands.quality", "run the data-quality expectation suites over the lake"),
    "report": ("pipelines.commands.reports", "write a compliance summary (HTML, Markdown, JSON)"),
    "schedule": ("pipelines.commands.schedule", "run detections, validation and reports on cron schedules"),
    "compact": ("pipelines.commands.lake", "compact small Parquet files in the lake"),
    "cluster": ("pipelines.commands.infra", "run a Flink session cluster and a 3-broker Kafka locally"),
}

# The exit-code policy of every command, declared here once (README, "Exit codes"):
#   0  done;
#   1  what the command drives failed: the broker, the cluster, a sink, the state database, the lake, a
#      detection's query, the Flink job; or the check it runs found a problem (a failed suite or fixture, a
#      tampered audit log: the handler returns 1);
#   2  the invocation or configuration is unusable, and nothing was driven: a bad argument (argparse's own
#      exit code), a configuration file (ConfigError naming file and line), a rule's or a suite's files, a
#      secret missing from the environment, an input file the command cannot read;
#   3  `kafka status` / `cluster status`: not running (the LSB convention, for scripts).
# An expected error is one line on stderr, "<command>: error: <message>", with its code; anything else is a
# (redacted) traceback and exit code 1. Handlers neither print errors nor choose these codes: they raise
# (options.UsageError and options.CommandFailed for what the domain reports as a plain Python error). The
# first matching row wins, so a subclass stands before its base. Classes are named, not imported: a module
# never loaded cannot have raised, and `usagewatch sql` need not load the Kafka client.
USAGE, FAILURE = 2, 1
EXPECTED_ERRORS = (
    ("pipelines.commands.options", "UsageError", USAGE),
    ("pipelines.infra.config", "ConfigError", USAGE),
    ("pipelines.incidents.sinks", "RoutingError", USAGE),  # a sink's secret is not in the environment
    ("pipelines.stream.privacy", "PrivacyError", USAGE),  # the pepper's variable is not in the environment
    ("pipelines.detect.detections", "RuleError", USAGE),  # a rule folder's files, or an unknown rule named
    ("pipelines.quality.suites", "QualityError", USAGE),  # an expectation suite or its batch SQL
    ("pipelines.lake.catalog", "CatalogError", USAGE),  # the lake catalogue's descriptions
    ("pipelines.lake.analyst", "ReadOnlyViolation", USAGE),  # an analyst query that is not SELECT/WITH
    ("pipelines.detect.incident_scoring", "CorpusError", USAGE),  # a labels file, or a lake with no events
    ("pipelines.exports.stix", "BundleError", USAGE),  # a peer's bundle `indicators import` cannot load
    ("pipelines.commands.options", "CommandFailed", FAILURE),
    ("pipelines.detect.detections", "DetectionError", FAILURE),  # a rule's query failed on the lake
    ("pipelines.incidents.alert_state", "AlertStateError", FAILURE),
    ("pipelines.lake.analyst", "LakeError", FAILURE),
    ("pipelines.lake.analyst", "QueryTimeout", FAILURE),
    ("pipelines.lake.batch_lake", "BatchLakeError", FAILURE),
    ("pipelines.reports.report", "ReportError", FAILURE),
    ("pipelines.infra.kafka_broker", "BrokerError", FAILURE),
    ("pipelines.infra.cluster", "ClusterError", FAILURE),
    ("pipelines.infra.processes", "ProcessError", FAILURE),
    ("kafka.errors", "KafkaError", FAILURE),
    ("duckdb", "Error", FAILURE),
)


def exit_code_of(error: Exception) -> int | None:
    """The exit code of an expected error, None for an unexpected one."""
    for module, name, code in EXPECTED_ERRORS:
        if module in sys.modules and isinstance(error, getattr(sys.modules[module], name)):
            return code
    return None


def wants_json_lines(args: argparse.Namespace) -> bool:
    """--log-format when given; otherwise JSON lines for the commands that declare themselves long-running
    (set_defaults(long_running=predicate over their arguments)), which a log shipper reads, not a person."""
    if getattr(args, "log_format", None):
        return args.log_format == "json"
    long_running = getattr(args, "long_running", None)
    return bool(long_running and long_running(args))


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
    for command_parser in _leaf_parsers(parser):
        add_verbosity(command_parser)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run something (no sub-commands of their own): each gets --quiet/--verbose."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    children = {id(child): child for group in groups for child in group.choices.values()}  # aliases once
    return [leaf for child in children.values() for leaf in _leaf_parsers(child)]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _overview_parser().parse_args(argv[:1] or ["--help"])
    args = build_parser(argv[0]).parse_args(argv)
    configure_logging(getattr(args, "verbosity", "normal"), json_lines=wants_json_lines(args))
    # Every error path ends here or prints on the way: no registered secret leaves the process, and an
    # unexpected error's traceback is redacted too (its messages may quote a URL or a response).
    with redaction.redacted_output():
        try:
            return int(args.func(args) or 0)
        except Exception as error:  # noqa: BLE001 (printed, redacted, as the traceback Python would print)
            code = exit_code_of(error)
            if code is not None:
                print(redaction.redact(f"{argv[0]}: error: {error}"), file=sys.stderr)
                return code
            print(redaction.redact(traceback.format_exc()).rstrip(), file=sys.stderr)
            return FAILURE


if __name__ == "__main__":
    sys.exit(main())
