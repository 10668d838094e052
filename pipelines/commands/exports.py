"""Command line of the exports: `incidents export`, `signals export`, `indicators import` (argparse only;
the work is in pipelines/exports/export.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from pipelines.commands.options import (
    add_config,
    add_lake,
    add_state,
    config_of,
    lake_of,
    state_of,
    with_state,
)

SIEM_FLAGS = (("--ocsf", "ocsf", "an OCSF 1.5.0 Detection Finding"), ("--ecs", "ecs", "ECS-shaped JSON"))


def _common(sub: argparse.ArgumentParser) -> None:
    add_config(sub)
    add_state(sub)
    sub.add_argument("--out", help="write here instead of standard output")


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")


def _with_store(args: argparse.Namespace, work) -> int:
    """work(config, store)'s text written to --out (or standard output)."""
    return with_state(args, lambda config, store: _write(work(config, store), args.out) or 0)


def run_incident_export(args: argparse.Namespace) -> int:
    from pipelines.exports import export

    def work(config, store) -> str:
        if args.format == "stix":
            now = dt.datetime.now(dt.UTC)
            # the lake gives user agents only the campaign used: --lake, else lake.path when configured
            has_lake = args.lake or "path" in config.section("lake")
            lake = lake_of(args, config) if has_lake else None
            return export.incident_stix(store, config, args.incident_id, args.producer, args.tlp, now, lake)
        return export.incident_siem(store, args.incident_id, args.format)

    return _with_store(args, work)


def run_signals_export(args: argparse.Namespace) -> int:
    from pipelines.exports import export

    return _with_store(
        args,
        lambda config, store: export.signals_siem(
            store, args.format, args.status, args.severity, args.detection, args.limit
        ),
    )


def add_incident_export(actions) -> None:
    """`usagewatch incidents export ID --ocsf|--ecs|--stix`."""
    from pipelines.exports.stix import TLP

    sub = actions.add_parser("export", help="one incident as OCSF, ECS or a STIX 2.1 indicator bundle")
    _common(sub)
    sub.add_argument("incident_id", help="incident id, or a unique prefix of at least 6 characters")
    formats = sub.add_mutually_exclusive_group(required=True)
    for flag, name, text in SIEM_FLAGS:
        formats.add_argument(flag, dest="format", action="store_const", const=name, help=text)
    formats.add_argument(
        "--stix", dest="format", action="store_const", const="stix",
        help="a STIX 2.1 bundle of the incident's indicators for peer providers (confirmed incidents only)",
    )  # fmt: skip
    sub.add_argument("--producer", default="usagewatch", help="--stix: the producing organisation's name")
    sub.add_argument(
        "--tlp", choices=sorted(TLP), default="amber", help="--stix: TLP marking (default amber)"
    )
    add_lake(
        sub, help="--stix: the lake, for user agents only the campaign used (default: lake.path, if set)"
    )
    sub.set_defaults(func=run_incident_export)


def add_signals_export(actions) -> None:
    """`usagewatch signals export --ocsf|--ecs`."""
    from pipelines.incidents.alerts import SEVERITIES

    sub = actions.add_parser("export", help="signals as OCSF or ECS documents, one JSON line each")
    _common(sub)
    formats = sub.add_mutually_exclusive_group(required=True)
    for flag, name, text in SIEM_FLAGS:
        formats.add_argument(flag, dest="format", action="store_const", const=name, help=text)
    sub.add_argument("--status", choices=("open", "acknowledged", "resolved"))
    sub.add_argument("--severity", choices=SEVERITIES, help="this severity and more urgent ones")
    sub.add_argument("--detection", help="only this detection's signals")
    sub.add_argument("--limit", type=int, help="at most this many signals, most recent first")
    sub.set_defaults(func=run_signals_export)


def run_indicators_import(args: argparse.Namespace) -> int:
    from pipelines.exports import export
    from pipelines.exports.stix import BundleError
    from pipelines.incidents.alert_state import AlertStateError

    config = config_of(args)
    try:
        result = export.import_indicators(state_of(args, config), args.bundle, dt.datetime.now(dt.UTC))
    except (AlertStateError, BundleError) as error:  # one transaction: say that the state is unchanged
        raise type(error)(f"{error}; nothing loaded") from error
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(result["kinds"].items()))
        print(
            f"{result['loaded']} indicator(s) of {result['bundle_id']} loaded ({kinds}); "
            f"{result['skipped']} of other kinds skipped"
        )
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("indicators", help="load peers' STIX 2.1 indicator bundles")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="indicators_command", required=True)
    load = actions.add_parser(
        "import",
        help="load a peer's bundle into the state; shared_indicator_match then finds accounts using them",
    )
    load.add_argument("bundle", help="STIX 2.1 bundle (JSON)")
    add_config(load)
    add_state(load)
    load.add_argument("--json", action="store_true", help="JSON output")
    load.set_defaults(func=run_indicators_import)
