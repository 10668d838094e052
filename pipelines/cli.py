"""`usagewatch` command line: each feature module registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes add_parser(subparsers) and sets `func` on its parsers; imported lazily per
# command would be nicer for start-up, but argparse needs every parser to print --help.
COMMAND_MODULES = (
    "pipelines.kafka_broker",  # kafka start|stop|status, topics
    "pipelines.generator",  # generate
    "pipelines.flink_job",  # job start, replay
    "pipelines.analyst",  # sql
    "pipelines.detections",  # detect
    "pipelines.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usagewatch",
        description="Streaming security analytics for AI model providers.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
