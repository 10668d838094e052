"""`usagewatch generate`: seeded synthetic traffic to a JSONL file or a Kafka topic."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from pipelines.commands import arguments
from pipelines.commands.options import UsageError, add_config
from pipelines.infra.config import load_config
from pipelines.stream.contracts import format_event_time
from pipelines.stream.privacy import load_privacy
from pipelines.traffic.field_traffic import FieldConfig, field_labels, field_records
from pipelines.traffic.generator import (
    BENIGN_TRAP_ACCOUNTS,
    PROFILES,
    SCENARIOS,
    GeneratorConfig,
    generate_records,
    labels,
    this_minute,
    write_label_rows,
)
from pipelines.traffic.records import Record, produce_to_kafka, pseudonymised, write_jsonl

logger = logging.getLogger(__name__)


def _parse_scenarios(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _non_negative(kind):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must be >= 0")
        return value

    return parse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate seeded synthetic access events (benign traffic, traps and attack scenarios)",
        description="Generate access events for [start, start+duration) to a JSONL file or a Kafka topic.",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed; same seed, same output (default 1)")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="classic",
        help="classic: scenarios that mirror the detection catalogue (default); field: realistic benign "
        "noise classes and campaign variants over six hours (pipelines/traffic/field_traffic)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        help=f"benign accounts; classic: including the {BENIGN_TRAP_ACCOUNTS} trap accounts (default 200); "
        "field: default 1000",
    )
    parser.add_argument(
        "--start",
        type=arguments.moment,
        default=None,
        help="first event time, ISO 8601 (default: now, rounded down to the minute, UTC)",
    )
    parser.add_argument(
        "--duration",
        type=arguments.duration,
        default=None,
        help="length of event time to generate, e.g. 30m, 2h (default: classic 30m, field 6h)",
    )
    parser.add_argument(
        "--scenarios",
        type=_parse_scenarios,
        default=None,
        help="comma list of attack scenarios (field: campaign kinds), empty for none (default: all of the "
        f"profile's; classic: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--hydra-accounts",
        type=_non_negative(int),
        default=40,
        help="classic profile: hydra ring size (default 40)",
    )
    parser.add_argument(
        "--max-disorder-s",
        type=_non_negative(float),
        default=None,
        help="events arrive at most this many seconds out of event-time order (default: classic 5, field 4)",
    )
    parser.add_argument(
        "--malformed",
        type=_non_negative(int),
        default=0,
        help="mix this many malformed records into the output (default 0)",
    )
    sink = parser.add_mutually_exclusive_group(required=True)
    sink.add_argument("--out", type=Path, help="write JSONL to this file")
    sink.add_argument("--bootstrap", metavar="HOST:PORT", help="produce to Kafka at this bootstrap server")
    parser.add_argument("--topic", default="access-events", help="Kafka topic (default access-events)")
    parser.add_argument(
        "--rate",
        type=_non_negative(float),
        default=0.0,
        help="Kafka only: max events per second, 0 = as fast as possible",
    )
    parser.add_argument(
        "--time-compression",
        type=_non_negative(float),
        default=0.0,
        metavar="K",
        help="Kafka only: replay event time K times faster than real time, 0 = no pacing",
    )
    parser.add_argument(
        "--labels", type=Path, help="write ground truth CSV (account_id,group,scenario_or_benign)"
    )
    parser.add_argument(
        "--privacy",
        action="store_true",
        help="apply the privacy section of the configuration (keyed-hash api_key_id, truncated IPs)",
    )
    add_config(parser)
    parser.set_defaults(func=run_generate)


def _classic_profile(args: argparse.Namespace) -> tuple[GeneratorConfig, Callable, Callable]:
    """(config, its labels, its records) of the classic profile; ValueError on bad options."""
    scenarios = SCENARIOS if args.scenarios is None else args.scenarios
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {','.join(SCENARIOS)}")
    config = GeneratorConfig(
        seed=args.seed,
        accounts=200 if args.accounts is None else args.accounts,
        start=args.start or this_minute(),
        duration=args.duration or timedelta(minutes=30),
        scenarios=scenarios,
        hydra_accounts=args.hydra_accounts,
        max_disorder_s=5.0 if args.max_disorder_s is None else args.max_disorder_s,
        malformed=args.malformed,
    )
    return config, labels, generate_records


def _field_profile(args: argparse.Namespace) -> tuple[object, Callable, Callable]:
    defaults = FieldConfig(start=args.start or this_minute())
    config = replace(
        defaults,
        seed=args.seed,
        benign_accounts=defaults.benign_accounts if args.accounts is None else args.accounts,
        duration=args.duration or defaults.duration,
        max_disorder_s=defaults.max_disorder_s if args.max_disorder_s is None else args.max_disorder_s,
        malformed=args.malformed,
    )
    if args.scenarios is not None:
        config = config.only(*args.scenarios)
    return config, field_labels, field_records


def run_generate(args: argparse.Namespace) -> int:
    if args.out is not None and (args.rate or args.time_compression):
        raise UsageError("--rate/--time-compression only apply with --bootstrap")
    try:
        profile = _field_profile if args.profile == "field" else _classic_profile
        config, label_rows, make_records = profile(args)
    except ValueError as error:  # the profiles' own checks of the options' values
        raise UsageError(str(error)) from error
    if args.labels is not None:
        rows = write_label_rows(label_rows(config), args.labels)
        logger.info(f"wrote {rows} label rows to {args.labels}")
    records = make_records(config)
    if args.privacy:
        privacy = load_privacy(load_config(args.config))
        records = pseudonymised(records, privacy)
    started = time.perf_counter()
    if args.out is not None:
        valid, malformed = write_jsonl(records, args.out)
        target = str(args.out)
    else:
        counts = [0, 0]

        def counted(records: Iterable[Record]) -> Iterator[Record]:
            for record in records:
                counts[record.malformed] += 1
                yield record

        acknowledged = produce_to_kafka(
            counted(records),
            args.bootstrap,
            args.topic,
            args.rate,
            time_compression=args.time_compression,
        )
        valid, malformed = counts
        target = f"{args.bootstrap}/{args.topic} ({acknowledged} acknowledged)"
    elapsed = time.perf_counter() - started
    total = valid + malformed
    logger.info(
        f"generated {valid} events + {malformed} malformed records for "
        f"{format_event_time(config.start)} +{config.duration} -> {target} in {elapsed:.2f}s "
        f"({total / elapsed if elapsed else 0:,.0f} records/s)",
        extra={"fields": {"events": valid, "malformed": malformed, "seconds": round(elapsed, 3)}},
    )
    return 0
