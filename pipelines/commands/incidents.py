"""On-call commands: `usagewatch incidents list|show|ack|resolve`, `usagewatch signals list|show` (alias
`alerts`, deprecated) and `usagewatch audit verify`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pipelines.commands import exports
from pipelines.commands.options import add_config, add_lake, add_state, lake_of, with_state
from pipelines.incidents.alert_state import STATUSES, AlertStateError, AlertStore, state_path
from pipelines.incidents.alerts import SEVERITIES, headline
from pipelines.incidents.audit import audit_log_path, open_audit_log, verify
from pipelines.incidents.audit_state import verify_state
from pipelines.incidents.engine import change_status
from pipelines.incidents.routing import incident_pages_dir, load_router, page_file_name
from pipelines.infra.config import Config, ConfigError, load_config
from pipelines.infra.rendering import format_table, terminal_safe
from pipelines.quality.settings import quality_settings
from pipelines.reports import incident_page

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    """All three groups: cli imports this module for any of them."""
    _add_incidents_parser(subparsers)
    _add_signals_parser(subparsers)
    _add_audit_parser(subparsers)


# --- incidents -------------------------------------------------------------------------------------


def run_incidents_list(args: argparse.Namespace) -> int:
    def action(config: Config, store: AlertStore) -> int:
        records = store.list_incidents(args.status, args.severity, args.limit)
        if args.json:
            print(json.dumps([record["incident"] for record in records], indent=2, sort_keys=True))
            return 0
        rows = [
            (
                short_id(r["incident_id"]),
                r["status"],
                r["severity"],
                r["risk_score"],
                r["account_count"],
                r["incident"]["signal_count"],
                r["first_seen"],
                r["last_seen"],
                r["title"],
            )
            for r in records
        ]
        columns = [
            "incident_id",
            "status",
            "severity",
            "risk",
            "accounts",
            "signals",
            "first_seen",
            "last_seen",
            "title",
        ]
        print(format_table(columns, rows))
        return 0

    return with_state(args, action)


def run_incidents_show(args: argparse.Namespace) -> int:
    def action(config: Config, store: AlertStore) -> int:
        if args.html:
            return _write_incident_page(args, config, store)
        record = store.get_incident(args.incident_id)
        if args.json:
            print(json.dumps(record["incident"], indent=2, sort_keys=True))
            return 0
        document = record["incident"]
        # title and summary carry account and entity ids from event data: escaped for the terminal
        print(terminal_safe(f"[{document['severity'].upper()}] {document['title']}"))
        print(terminal_safe(document["summary"]))
        for name in ("incident_id", "status", "risk_score", "merged_into", "created_at", "updated_at"):
            if document.get(name) is not None:
                print(f"{name:>14}: {document[name]}")
        for delivery in record["deliveries"]:
            state = (
                f"delivered {delivery['delivered_at']}"
                if delivery["delivered_at"]
                else f"pending, last error: {delivery['last_error']}"
            )
            print(f"{'delivery':>14}: {delivery['change']} -> {delivery['sink']}: {state}")
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0

    return with_state(args, action)


def _linked_page(config: Config, incident_id: str) -> Path:
    """Where notifications link an incident's page."""
    return incident_pages_dir(quality_settings(config).reports_dir) / page_file_name(incident_id)


def _write_incident_page(args: argparse.Namespace, config: Config, store: AlertStore) -> int:
    """`incidents show ID --html`: its page, by default where notifications link it."""
    incident_id = store.resolve_id(args.incident_id, "incidents", "incident_id")
    data = incident_page.build_page_data(store, incident_id, lake_of(args, config))
    print(incident_page.write_page(data, Path(args.out) if args.out else _linked_page(config, incident_id)))
    return 0


def _refresh_incident_page(
    args: argparse.Namespace, config: Config, store: AlertStore, incident_id: str
) -> None:
    """Rewrite the linked page after `ack`/`resolve`. The change is already recorded: a page that cannot
    be written is a warning, never a failed acknowledgement."""
    try:
        lake = lake_of(args, config)
    except ConfigError as error:  # no lake configured: the page draws what its signals name
        lake, no_lake = None, str(error)
    try:
        if lake is None:
            data = incident_page.page_data(store, incident_id, None, no_lake)
        else:
            data = incident_page.build_page_data(store, incident_id, lake)
        incident_page.write_page(data, _linked_page(config, incident_id))
    except Exception as error:  # noqa: BLE001 (a page is a convenience: the status change stands)
        logger.warning(f"incident page of {incident_id} not rewritten: {error}")


def _change_status_command(args: argparse.Namespace, change: str) -> int:
    def action(config: Config, store: AlertStore) -> int:
        router = load_router(config)  # fails fast on a missing secret before anything changes
        now = dt.datetime.now(dt.UTC)
        copy = change_status(
            store,
            router,
            open_audit_log(config, args.state),
            args.incident_id,
            change,
            args.by,
            args.note,
            now,
        )
        # Before the notification goes out: its link opens the page, which must show the new status.
        _refresh_incident_page(args, config, store, copy["incident_id"])
        report = router.deliver(store, now, incident_ids=[copy["incident_id"]])
        if args.json:
            print(json.dumps(copy, indent=2, sort_keys=True))
        else:
            print(
                f"{copy['incident_id']} {change} by {args.by} ({copy['signal_count']} signal(s)); "
                f"{report.describe()}"
            )
        return 0

    return with_state(args, action)


INCIDENT_JSON_HELP = "JSON output (the incident documents)"


def _add_state_options(sub: argparse.ArgumentParser, json_help: str = "JSON output") -> None:
    add_config(sub)
    add_state(sub)
    sub.add_argument("--json", action="store_true", help=json_help)


def _add_incidents_parser(subparsers) -> None:
    parser = subparsers.add_parser("incidents", help="list, show, acknowledge and resolve incidents")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="incidents_command", required=True)

    listing = actions.add_parser("list", help="incidents, most recently updated first")
    _add_state_options(listing, INCIDENT_JSON_HELP)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--severity", choices=SEVERITIES, help="this severity and more urgent ones")
    listing.add_argument("--limit", type=int, help="at most this many rows")
    listing.set_defaults(func=run_incidents_list)

    show = actions.add_parser("show", help="one incident: summary, deliveries, full document")
    _add_state_options(show, INCIDENT_JSON_HELP)
    show.add_argument("incident_id", help="incident id, or a unique prefix of at least 6 characters")
    show.add_argument(
        "--html",
        action="store_true",
        help="write its page (the ring, its traffic, every signal's evidence) and print the file's path",
    )
    show.add_argument("-o", "--out", help="with --html: the file (default: where notifications link it)")
    add_lake(show, help="with --html: lake directory (default: lake.path of the configuration)")
    show.set_defaults(func=run_incidents_show)

    exports.add_incident_export(actions)

    for name, change, text in (
        ("ack", "acknowledged", "acknowledge an open incident and its signals (routed, audited)"),
        ("resolve", "resolved", "resolve an incident and its signals (routed, audited)"),
    ):
        sub = actions.add_parser(name, help=text)
        _add_state_options(sub, INCIDENT_JSON_HELP)
        sub.add_argument("incident_id", help="incident id, or a unique prefix of at least 6 characters")
        sub.add_argument("--by", required=True, help="who is acting (recorded and audited)")
        sub.add_argument("--note", help="free text kept with the incident")
        add_lake(
            sub,
            help="lake directory for the rewritten incident page (default: lake.path of the configuration)",
        )
        sub.set_defaults(func=lambda args, change=change: _change_status_command(args, change))


# --- signals (alias alerts) ------------------------------------------------------------------------


def short_id(identifier: str | None) -> str:
    return identifier[:12] if identifier else "-"


def _print_record(record: dict[str, Any]) -> None:
    alert = record["alert"]
    print(headline(alert))
    lifecycle = [
        ("alert_id", record["alert_id"]),
        ("status", record["status"]),
        ("severity", record["severity"]),
        ("dedup_key", record["dedup_key"]),
        ("incident_id", record["incident_id"]),
        ("first_seen", record["first_seen"]),
        ("last_seen", record["last_seen"]),
        ("suppressed_by", record["suppressed_by"]),
        ("acknowledged", f"{record['ack_at']} by {record['ack_by']}" if record["ack_at"] else None),
        (
            "resolved",
            f"{record['resolved_at']} by {record['resolved_by']}" if record["resolved_at"] else None,
        ),
    ]
    for name, value in lifecycle:
        if value is not None:
            print(f"{name:>14}: {value}")
    print(json.dumps(alert, indent=2, sort_keys=True))


def run_signals_list(args: argparse.Namespace) -> int:
    def action(config: Config, store: AlertStore) -> int:
        records = store.list_alerts(args.status, args.severity, args.detection, args.limit)
        if args.json:
            print(
                json.dumps(
                    [
                        json.loads(r["alert"]) | {"status": r["status"], "incident_id": r["incident_id"]}
                        for r in records
                    ],
                    indent=2,
                    sort_keys=True,
                )
            )
            return 0
        rows = [
            (
                short_id(r["alert_id"]),
                r["status"],
                r["severity"],
                r["detection_id"],
                r["entity_id"],
                len(json.loads(r["alert"])["account_ids"]),
                r["window_start"],
                short_id(r["incident_id"]),
                short_id(r["suppressed_by"]),
            )
            for r in records
        ]
        columns = [
            "alert_id",
            "status",
            "severity",
            "detection",
            "entity",
            "accounts",
            "window_start",
            "incident",
            "suppressed_by",
        ]
        print(format_table(columns, rows))
        return 0

    return with_state(args, action)


def run_signals_show(args: argparse.Namespace) -> int:
    def action(config: Config, store: AlertStore) -> int:
        record = store.get(args.alert_id)
        if args.json:
            print(
                json.dumps(
                    record["alert"] | {"status": record["status"], "incident_id": record["incident_id"]},
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            _print_record(record)
        return 0

    return with_state(args, action)


def _add_signals_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "signals",
        aliases=["alerts"],
        help="list and show signals (what detections found; `alerts` is the deprecated name)",
        description="Signals are what the detections found. They are never routed on their own: the "
        "incident engine correlates them into incidents (`usagewatch incidents`), which on-call "
        "acknowledges and resolves, and with them every signal they hold.",
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="signals_command", required=True)

    listing = actions.add_parser("list", help="signals, most recent window first")
    _add_state_options(listing)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--severity", choices=SEVERITIES, help="this severity and more urgent ones")
    listing.add_argument("--detection", help="only this detection's signals")
    listing.add_argument("--limit", type=int, help="at most this many rows")
    listing.set_defaults(func=run_signals_list)

    show = actions.add_parser("show", help="one signal with its lifecycle and full JSON")
    _add_state_options(show)
    show.add_argument("alert_id", help="signal id, or a unique prefix of at least 6 characters")
    show.set_defaults(func=run_signals_show)

    exports.add_signals_export(actions)


# --- audit -----------------------------------------------------------------------------------------


def run_verify_command(args: argparse.Namespace) -> int:
    """The chain, then (unless only --log is given) the state database against it."""
    config = load_config(args.config) if args.state or not args.log else None
    path = Path(args.log) if args.log else audit_log_path(config, args.state)
    state = state_path(config, args.state) if config is not None else None
    ok, _, message = verify(path, expected_head=args.expect_head)
    if ok and state is not None:
        if state.exists():
            try:
                ok, state_message = verify_state(str(state), str(path))
            except AlertStateError as error:
                ok, state_message = False, str(error)
            message += "\n" + state_message
        else:
            message += f"\n{state}: no state database: the chain alone was checked"
    print(("ok: " if ok else "TAMPERED: ") + message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _add_audit_parser(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="verify the hash-chained audit log")
    actions = parser.add_subparsers(dest="audit_command", required=True)
    verify_parser = actions.add_parser(
        "verify",
        help="check the chain and the state database against it; exit 1 naming the first difference",
        description="Detects any edit, deletion or reordering of records, and any signal, incident or "
        "status change in the state database without its record or the other way round (unless only "
        "--log is given). Records cut off the end are detected against the state's audit cursor, and "
        "in every case against a head hash recorded elsewhere (--expect-head).",
    )
    add_config(verify_parser, "usagewatch.yml to read state.audit_log from")
    verify_parser.add_argument(
        "--log", help="audit log file (default: state.audit_log, else audit.jsonl beside the state database)"
    )
    add_state(
        verify_parser,
        "state database to cross-check against the chain (its audit log unless --log names one)",
    )
    verify_parser.add_argument("--expect-head", metavar="HASH", help="hash the newest record must have")
    verify_parser.set_defaults(func=run_verify_command)
